%% @doc make bench, part 5: CPU per event at the rates brokers really run.
%%
%% 8 processes call a function at a fixed total rate for ?SECONDS. Before
%% each call a process copies 32 KB of its own 256 KB of unrelated data, so
%% that the call meets caches that other work has just used, as EMQX's own
%% per-message work leaves them. The function is the message.publish hook
%% (bridge running), an empty NIF or an Erlang `!' to a sink (bridge not
%% started). CPU is read per thread of this VM from
%% /proc/self/task/*/schedstat (nanoseconds on CPU), from just before the
%% first call until the bridge reports every event delivered, and grouped by
%% thread name: the schedulers that run the callers, dirty schedulers, the
%% bridge's own threads, librdkafka's threads, and the rest of the VM.
%% What the bridge adds per event is the hook run minus the empty-NIF run.
%%
%% Beside them, the floor: kafka_tool produce-raw-paced, a process of its
%% own, hands the bridge's encoded records to librdkafka at the same rate
%% and in the bridge's rhythm (a hand-over per ?HANDOVER_MS, librdkafka
%% lingering ?RAW_LINGER_MS after it, as memory mode does with the default
%% linger.ms of 20), from ready values and with nothing else to do. Its CPU
%% per record is what librdkafka alone costs at that rate, which the
%% bridge's producer thread and librdkafka's threads cannot go below. It
%% runs twice: handing the records over in batches, stamped by librdkafka,
%% and with each record carrying the message's publish time, as the
%% bridge's do by default, which librdkafka takes one record per call.
%%
%% Last, the hook loop at ?CLUSTER_RATE against that broker and against a
%% 3-broker cluster (replication factor 3, min.insync.replicas 2, every
%% node a controller too), round by round: what replication costs the
%% bridge's side.
-module(kafka_bridge_paced).

-export([main/0, run/1]).

-import(kafka_bridge_bench, [out/2, median/1, thread_cpu_ns/1]).

-define(RATES, [10000, 50000, 200000]).
-define(CLUSTER_RATE, 50000).
-define(PROCS, 8).
-define(SECONDS, 5).
%% Five rounds: at 10 000/s the calling schedulers' share varies widely from
%% round to round (bench/NOTES.md), and a goal is a ratio of two medians.
-define(ROUNDS, 5).
-define(JUNK_BYTES, (256 * 1024)).
-define(COPY_BYTES, (32 * 1024)).
-define(KINDS, [scheduler, dirty, bridge, librdkafka, other]).
-define(HANDOVER_MS, 20).
-define(RAW_LINGER_MS, 1).
%% The librdkafka properties the bridge sets with its defaults
%% (native/core/src/config/mod.rs) and the bench's big buffer
%% (native/core/src/kafka/client.rs), as memory mode applies them.
-define(RAW_PROPS, ["acks=all", "linger.ms=" ++ integer_to_list(?RAW_LINGER_MS), "compression.type=lz4",
                    "partitioner=murmur2_random", "enable.idempotence=true", "message.max.bytes=2097152",
                    "socket.keepalive.enable=true", "statistics.interval.ms=1000", "queue.buffering.max.messages=2000000",
                    "queue.buffering.max.kbytes=2097151"]).

main() ->
    run(os:getenv("BENCH_DIR")),
    halt(0).

run(Dir) ->
    Msg = kafka_bridge_test_lib:message(<<"bench-client-1">>, <<"bench/sensors/42/temp">>,
                                        kafka_bridge_bench:payload(100), #{}),
    Values = kafka_bridge_bench:sample_values(Dir, Msg),
    kafka_bridge_bench:with_broker(
      Dir, fun(Broker) ->
                   Topic = kafka_bridge_test_lib:unique(<<"paced">>),
                   ok = kafka_bridge_broker:create_topic(Broker, Topic),
                   Rounds = [[{Rate, one_rate(Broker, Topic, Msg, Values, Rate)} || Rate <- ?RATES]
                             || _ <- lists:seq(1, ?ROUNDS)],
                   Idle = [idle(Broker, Topic) || _ <- lists:seq(1, ?ROUNDS)],
                   report(Rounds, Idle),
                   against_a_cluster(Dir, Broker, Topic, Msg)
           end).

%% One round at one rate: the three loops and the floor, interleaved.
one_rate(Broker, Topic, Msg, Values, Rate) ->
    Sink = spawn(fun kafka_bridge_bench:sink/0),
    Send = paced(fun() -> Sink ! Msg, ok end, Rate),
    exit(Sink, kill),
    Nif = paced(fun() -> emqx_plugin_kafka_bridge_nif:noop(Msg) end, Rate),
    Hook = hook_loop(Broker, Topic, Msg, Rate),
    PublishedAt = element(9, Msg),
    #{send => Send, nif => Nif, hook => Hook, raw => raw_floor(Broker, Values, Rate, "none"),
      raw_stamped => raw_floor(Broker, Values, Rate, integer_to_list(PublishedAt))}.

%% The message.publish hook at Rate, the bridge on Kafka (a broker or a
%% cluster) with a buffer room for the whole run.
hook_loop(Kafka, Topic, Msg, Rate) ->
    Bridge = kafka_bridge_bench:start_bridge(Kafka, Topic, kafka_bridge_bench:big_buffer()),
    wait_connected(),
    Hook = paced(fun() -> {ok, _} = emqx_plugin_kafka_bridge:on_message_publish(Msg, Bridge), ok end, Rate,
                 fun(Events) -> #{dropped := 0} = kafka_bridge_bench:wait_delivered(Events) end),
    ok = kafka_bridge_test_lib:stop_bridge(),
    Hook.

against_a_cluster(Dir, Broker, Topic, Msg) ->
    Cluster = kafka_bridge_broker:start_cluster(Dir, #{}),
    try
        ClusterTopic = kafka_bridge_test_lib:unique(<<"paced_cluster">>),
        ok = kafka_bridge_broker:create_topic(Cluster, ClusterTopic),
        Runs = [#{broker => hook_loop(Broker, Topic, Msg, ?CLUSTER_RATE),
                  cluster => hook_loop(Cluster, ClusterTopic, Msg, ?CLUSTER_RATE)}
                || _ <- lists:seq(1, ?ROUNDS)],
        report_cluster(Runs)
    after
        [kafka_bridge_broker:stop(B) || B <- maps:get(brokers, Cluster)]
    end.

%% µs of CPU per record of kafka_tool produce-raw-paced at Rate; Stamp is
%% "none" or the Kafka timestamp every record carries.
raw_floor(Broker, Values, Rate, Stamp) ->
    Topic = kafka_bridge_test_lib:unique(<<"raw_paced">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    Cmd = lists:flatten(io_lib:format("'~s' produce-raw-paced ~s '~s' '~s' bench-client-1 ~b ~b ~b ~s ~s",
                                      [kafka_bridge_test_lib:kafka_tool(), kafka_bridge_broker:bootstrap(Broker),
                                       Topic, Values, Rate, ?SECONDS, ?HANDOVER_MS, Stamp,
                                       string:join(?RAW_PROPS, " ")])),
    {raw_paced, Records, CpuNs, _WallUs} = kafka_bridge_bench:kafka_tool_term(Cmd),
    CpuNs / Records / 1000.

wait_connected() ->
    ok = kafka_bridge_test_lib:wait_until(
           fun() -> maps:get(state, emqx_plugin_kafka_bridge:status()) =:= connected end, 10000),
    timer:sleep(1000).

%% The bridge connected and given nothing to do.
idle(Broker, Topic) ->
    _ = kafka_bridge_bench:start_bridge(Broker, Topic, kafka_bridge_bench:big_buffer()),
    wait_connected(),
    Before = thread_cpu(),
    T0 = erlang:monotonic_time(nanosecond),
    timer:sleep(?SECONDS * 1000),
    Cpu = cpu_by_kind(Before, thread_cpu()),
    Wall = erlang:monotonic_time(nanosecond) - T0,
    ok = kafka_bridge_test_lib:stop_bridge(),
    maps:map(fun(_Kind, Ns) -> 100 * Ns / Wall end, Cpu).

paced(Call, Rate) ->
    paced(Call, Rate, fun(_Events) -> ok end).

%% Runs Call at Rate per second from ?PROCS processes for ?SECONDS, then
%% Settle(Events) (waits for the deliveries). Returns the events done, the
%% wall time and the CPU nanoseconds of each kind of thread.
paced(Call, Rate, Settle) ->
    Parent = self(),
    PerProc = Rate div ?PROCS,
    erlang:garbage_collect(),
    Before = thread_cpu(),
    T0 = erlang:monotonic_time(microsecond),
    End = T0 + ?SECONDS * 1000000,
    Pids = [spawn_link(fun() ->
                               Junk = crypto:strong_rand_bytes(?JUNK_BYTES),
                               Parent ! {done, self(), pace(Call, Junk, PerProc, T0, End, 0)}
                       end) || _ <- lists:seq(1, ?PROCS)],
    Events = lists:sum([receive {done, Pid, N} -> N end || Pid <- Pids]),
    Settle(Events),
    Wall = erlang:monotonic_time(microsecond) - T0,
    #{events => Events, wall_us => Wall, cpu => cpu_by_kind(Before, thread_cpu())}.

pace(Call, Junk, PerProc, T0, End, Done) ->
    Now = erlang:monotonic_time(microsecond),
    Due = (Now - T0) * PerProc div 1000000,
    if
        Now >= End ->
            Done;
        Done < Due ->
            Offset = (Done rem (?JUNK_BYTES div ?COPY_BYTES)) * ?COPY_BYTES,
            _ = binary:copy(binary:part(Junk, Offset, ?COPY_BYTES)),
            ok = Call(),
            pace(Call, Junk, PerProc, T0, End, Done + 1);
        true ->
            receive after 1 -> ok end,
            pace(Call, Junk, PerProc, T0, End, Done)
    end.

%%--------------------------------------------------------------------
%% CPU per thread
%%--------------------------------------------------------------------

%% #{Tid => {Kind, Nanoseconds on CPU}} for every thread of this VM.
thread_cpu() ->
    {ok, Tids} = file:list_dir("/proc/self/task"),
    maps:from_list([{Tid, Cpu} || Tid <- Tids, {ok, Cpu} <- [read_thread(Tid)]]).

read_thread(Tid) ->
    case {file:read_file(filename:join(["/proc/self/task", Tid, "comm"])), thread_cpu_ns(Tid)} of
        {{ok, Comm}, {ok, Ns}} -> {ok, {kind(string:trim(Comm)), Ns}};
        _ -> error   % the thread exited in between
    end.

%% Thread names: "1_scheduler", "2_dirty_cpu_sch", "kafka_bridge_pr"
%% (the producer, cut to 15 bytes by Linux), "rdk:main", "rdk:broker1", ...
kind(Comm) ->
    case Comm of
        <<"rdk:", _/binary>> -> librdkafka;
        <<"kafka_bridge", _/binary>> -> bridge;
        _ ->
            case {binary:match(Comm, <<"dirty">>), binary:match(Comm, <<"_scheduler">>)} of
                {nomatch, nomatch} -> other;
                {nomatch, _} -> scheduler;
                _ -> dirty
            end
    end.

%% CPU nanoseconds per kind between two readings; a thread that started in
%% between counts from zero.
cpu_by_kind(Before, After) ->
    Zero = maps:from_list([{K, 0} || K <- ?KINDS]),
    maps:fold(fun(Tid, {Kind, Ns}, Acc) ->
                      {_, Was} = maps:get(Tid, Before, {Kind, 0}),
                      maps:update_with(Kind, fun(V) -> V + Ns - Was end, Acc)
              end, Zero, After).

%%--------------------------------------------------------------------
%% Report
%%--------------------------------------------------------------------

%% µs of CPU per event, all threads or one kind.
per_event(#{events := N, cpu := Cpu}) -> lists:sum(maps:values(Cpu)) / N / 1000.
per_event(#{events := N, cpu := Cpu}, Kind) -> maps:get(Kind, Cpu) / N / 1000.

report(Rounds, Idle) ->
    out("~n## CPU per event at paced rates~n~n"
        "~b processes, 100 B payload, format emqx, ~b s per rate and loop, ~b rounds (medians); before each call "
        "a process copies ~b KB of its own ~b KB of other data. CPU of every VM thread from "
        "/proc/self/task/*/schedstat, until every event is delivered. Bridge adds = hook loop - empty-NIF loop. "
        "`!` adds = `!` loop - empty-NIF loop, on the schedulers (the sender's copy and the sink's receive). "
        "Raw librdkafka: every thread of a process that hands the same encoded records to librdkafka at the "
        "same rate, ~b ms apart, with librdkafka's linger.ms ~b (bench/kafka_bridge_paced.erl), the least the "
        "producer thread and librdkafka can cost together: in batches and stamped by librdkafka, and (stamped) "
        "one call per record, each with the publish time as the bridge's default `timestamp = publish` sends it.~n",
        [?PROCS, ?SECONDS, ?ROUNDS, ?COPY_BYTES div 1024, ?JUNK_BYTES div 1024, ?HANDOVER_MS, ?RAW_LINGER_MS]),
    out("| offered/s | done/s | hook loop | empty NIF loop | `!` loop | bridge adds | of it: calling schedulers "
        "| dirty | producer thread | librdkafka | other | `!` adds | raw librdkafka | raw, stamped |", []),
    out("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", []),
    Added = [report_rate(Rate, [maps:get(Rate, maps:from_list(R)) || R <- Rounds]) || Rate <- ?RATES],
    IdleTotal = median([lists:sum(maps:values(I)) || I <- Idle]),
    IdleBridge = median([maps:get(bridge, I) + maps:get(librdkafka, I) || I <- Idle]),
    out("~nidle, connected, no events, ~b s x ~b: bridge and librdkafka threads ~.2f % of a core; "
        "whole VM ~.2f % (runs ~w)",
        [?SECONDS, ?ROUNDS, IdleBridge, IdleTotal,
         [round2(maps:get(bridge, I) + maps:get(librdkafka, I)) || I <- Idle]]),
    goals(maps:from_list(Added), IdleBridge).

report_rate(Rate, Runs) ->
    Med = fun(F) -> median([F(R) || R <- Runs]) end,
    Done = Med(fun(#{hook := #{events := N, wall_us := W}}) -> N / (W / 1.0e6) end),
    Added = fun(Kind) -> Med(fun(#{hook := H, nif := N}) -> per_event(H, Kind) - per_event(N, Kind) end) end,
    Total = Med(fun(#{hook := H, nif := N}) -> per_event(H) - per_event(N) end),
    Sched = Added(scheduler),
    Raw = Med(fun(#{raw := R}) -> R end),
    Send = Med(fun send_adds/1),
    RawStamped = Med(fun(#{raw_stamped := R}) -> R end),
    out("| ~b | ~b | ~.2f us | ~.2f us | ~.2f us | **~.2f us** | ~.2f | ~.2f | ~.2f | ~.2f | ~.2f | ~.2f us | ~.2f us | ~.2f us |",
        [Rate, round(Done), Med(fun(#{hook := H}) -> per_event(H) end), Med(fun(#{nif := N}) -> per_event(N) end),
         Med(fun(#{send := S}) -> per_event(S) end), Total, Sched, Added(dirty), Added(bridge),
         Added(librdkafka), Added(other), Send, Raw, RawStamped]),
    Threads = Med(fun threads/1),
    {Rate, #{total => Total, sched => Sched, runs => [round2(per_event(H) - per_event(N)) || #{hook := H, nif := N} <- Runs],
             threads => Threads, raw => Raw, rounds => Runs}}.

%% What the bridge's calling schedulers add per event, and what `!' adds.
sched_adds(#{hook := H, nif := N}) -> per_event(H, scheduler) - per_event(N, scheduler).
send_adds(#{send := S, nif := N}) -> per_event(S, scheduler) - per_event(N, scheduler).

%% The bridge's producer thread and librdkafka's threads, per event.
threads(#{hook := H}) -> per_event(H, bridge) + per_event(H, librdkafka).

goals(Added, IdleBridge) ->
    #{total := T50, sched := S50, runs := Runs50, threads := Threads50, raw := Raw50} = maps:get(50000, Added),
    #{total := T10, runs := Runs10, threads := Threads10, raw := Raw10} = maps:get(10000, Added),
    out("~ngoals (issue 21): at 50000/s bridge adds ~.2f us/event (goal <= 0.8; runs ~w), ~.2f us on the calling "
        "schedulers (goal <= 0.4); at 10000/s ~.2f us (runs ~w) = ~.2f x the 50000/s figure (goal <= 1.5); "
        "idle ~.2f % of a core (goal < 0.5)",
        [T50, Runs50, S50, T10, Runs10, T10 / T50, IdleBridge]),
    out("~nfloor: raw librdkafka alone costs ~.2f us/record at 50000/s and ~.2f at 10000/s (~.2f x); the bridge's "
        "producer thread and librdkafka's threads ~.2f and ~.2f us/event, ~.2f and ~.2f x the floor",
        [Raw50, Raw10, Raw10 / Raw50, Threads50, Threads10, Threads50 / Raw50, Threads10 / Raw10]),
    goals_38(maps:get(rounds, maps:get(50000, Added))).

%% Issue 38's paced goals at 50 000/s, as medians of per-round ratios (each
%% round's loops and floors ran side by side).
goals_38(Rounds) ->
    Ratios = fun(F) -> [F(R) || R <- Rounds] end,
    SchedToSend = Ratios(fun(R) -> sched_adds(R) / send_adds(R) end),
    ToRaw = Ratios(fun(#{raw := Raw} = R) -> threads(R) / Raw end),
    ToStamped = Ratios(fun(#{raw_stamped := Raw} = R) -> threads(R) / Raw end),
    StampCost = Ratios(fun(#{raw := Raw, raw_stamped := Stamped}) -> Stamped / Raw end),
    out("~ngoals (issue 38), at 50000/s, medians of per-round ratios: the calling schedulers ~.2f x what `!` adds "
        "(goal <= 1.5; rounds ~w); the producer thread and librdkafka ~.2f x raw librdkafka in batches (goal <= 1.1; "
        "rounds ~w) and ~.2f x raw librdkafka with every record stamped (rounds ~w), which itself costs ~.2f x the "
        "batches (rounds ~w)",
        [median(SchedToSend), [round2(X) || X <- SchedToSend], median(ToRaw), [round2(X) || X <- ToRaw],
         median(ToStamped), [round2(X) || X <- ToStamped], median(StampCost), [round2(X) || X <- StampCost]]).

report_cluster(Runs) ->
    Med = fun(Kafka, F) -> median([F(maps:get(Kafka, R)) || R <- Runs]) end,
    Whole = fun(Kafka) -> Med(Kafka, fun per_event/1) end,
    Threads = fun(Kafka) -> Med(Kafka, fun(H) -> per_event(H, bridge) + per_event(H, librdkafka) end) end,
    out("~ncluster: at ~b/s against 3 brokers (replication factor 3, min.insync.replicas 2) the hook loop costs "
        "~.2f us/event and the producer thread with librdkafka ~.2f; against one broker, the same rounds, ~.2f and "
        "~.2f (~.2f x and ~.2f x; ~b rounds, medians; cluster runs ~w)",
        [?CLUSTER_RATE, Whole(cluster), Threads(cluster), Whole(broker), Threads(broker),
         Whole(cluster) / Whole(broker), Threads(cluster) / Threads(broker), ?ROUNDS,
         [round2(per_event(C)) || #{cluster := C} <- Runs]]).

round2(X) -> round(X * 100) / 100.
