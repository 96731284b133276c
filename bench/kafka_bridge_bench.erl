%% @doc The benchmark harness (`make bench`). Not a test: it prints figures.
%%
%% 1. Hook cost: ns per message.publish callback in a tight loop, median of
%%    5 runs, beside an Erlang `!' of the same record and an empty NIF call:
%%    wall time, and the CPU time of the scheduler thread the loop is bound
%%    to. On 2 cores the producer and librdkafka threads take turns with
%%    that scheduler, so its wall time counts their time too.
%% 2. End to end: events/s from hook calls until every delivery report is
%%    in, beside a raw librdkafka producer (kafka_tool produce-raw) handing
%%    the same encoded bytes over with rd_kafka_produce_batch, 1024 at a
%%    time, with the same properties, to the same broker; the same with
%%    buffer.mode = disk (fsync every_batch); and the hook driven from 8
%%    processes at once.
%%    Also end to end over SASL_SSL (SCRAM-SHA-512, on Kafka's own TLS
%%    listener) with zstd beside plaintext with lz4, on one broker.
%% 3. Scheduler safety: long_schedule (> 1 ms) reports while 1 MB events
%%    are bridged.
%% 4. Memory: the VM's peak RSS with 1M events offered while the broker is
%%    down, against buffer.max_bytes.
%% 5. CPU at paced rates (kafka_bridge_paced.erl, a VM of its own): what the bridge costs per event
%%    at 10 000, 50 000 and 200 000 events/s, against an empty NIF and an
%%    Erlang `!' paced the same way, and what it costs idle.
%%
%% Each measurement uses a fresh Apache Kafka node (kafka_bridge_broker) on
%% loopback ports.
-module(kafka_bridge_bench).

-export([main/0, main_kept_memory/0]).
%% For kafka_bridge_paced.
-export([out/2, median/1, thread_cpu_ns/1, payload/1, with_broker/2, start_bridge/3, big_buffer/0, wait_delivered/1, sink/0,
         sample_values/2, kafka_tool_term/1]).

-import(kafka_bridge_test_lib, [message/4, unique/1]).

-define(RUNS, 5).
-define(E2E_RUNS, 5).
-define(E2E_EVENTS, 300000).
%% The producer settings the bridge uses by default, for the raw baseline too.
-define(PROPS, ["acks=all", "linger.ms=20", "compression.type=lz4", "partitioner=murmur2_random",
                "enable.idempotence=true", "message.max.bytes=2097152", "socket.keepalive.enable=true"]).

main() ->
    Dir = os:getenv("BENCH_DIR"),
    facts(),
    %% First, while the VM's peak RSS is still its baseline.
    memory(Dir),
    hook_cost(Dir, 100, 1000000),
    hook_cost(Dir, 1024, 1000000),
    hook_cost(Dir, 65536, 20000),
    record_shape(Dir, 100, 300000),
    record_shape(Dir, 1024, 300000),
    end_to_end(Dir, 100),
    end_to_end(Dir, 1024),
    secured_end_to_end(Dir, 1024),
    concurrent(Dir, 1024, 8, 100000),
    scheduler_safety(Dir),
    halt(0).

%% The hook cost again in a VM whose mimalloc never gives memory back
%% (run.sh sets MIMALLOC_PURGE_DELAY=-1; a diagnostic, not the shipped
%% setting): after the first run the queue reuses pages an earlier run
%% faulted in, so less of the figure is the kernel zeroing fresh pages
%% (bench/NOTES.md says how much is left).
main_kept_memory() ->
    Dir = os:getenv("BENCH_DIR"),
    hook_cost(Dir, 100, 1000000, "pages kept (MIMALLOC_PURGE_DELAY=-1)"),
    hook_cost(Dir, 1024, 1000000, "pages kept (MIMALLOC_PURGE_DELAY=-1)"),
    halt(0).

out(Format, Args) ->
    io:format(Format ++ "~n", Args).

facts() ->
    Rustc = string:trim(os:cmd("rustc --version")),
    Cpu = string:trim(os:cmd("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")),
    out("## Machine~n~ncores: ~b (~s), OTP ~s (erts ~s), ~s, schedulers ~b, dirty CPU ~b~n",
        [erlang:system_info(logical_processors_available), Cpu, erlang:system_info(otp_release),
         erlang:system_info(version), Rustc, erlang:system_info(schedulers_online),
         erlang:system_info(dirty_cpu_schedulers_online)]).

median(Values) ->
    lists:nth((length(Values) + 1) div 2, lists:sort(Values)).

%% A UTF-8 text payload (the `auto' encoding's common case), not too compressible.
payload(Size) ->
    << <<($a + rand:uniform(26) - 1)>> || _ <- lists:seq(1, Size) >>.

with_broker(Dir, Fun) ->
    Broker = kafka_bridge_broker:start(filename:join(Dir, binary_to_list(unique(<<"b">>)))),
    try Fun(Broker) after kafka_bridge_broker:stop(Broker) end.

start_bridge(Broker, Topic, Buffer) ->
    Config = kafka_bridge_test_lib:config(Broker, #{<<"events">> => #{<<"message_publish">> => #{<<"topic">> => Topic}},
                                                    <<"buffer">> => Buffer}),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Config),
    emqx_plugin_kafka_bridge:bridge().

big_buffer() ->
    #{<<"max_messages">> => 4000000, <<"max_bytes">> => 6 * 1024 * 1024 * 1024}.

%%--------------------------------------------------------------------
%% 1. Hook cost
%%--------------------------------------------------------------------

hook_cost(Dir, Size, Calls) ->
    hook_cost(Dir, Size, Calls, "").

hook_cost(Dir, Size, Calls, Label) ->
    Msg = message(<<"bench-client-1">>, <<"bench/sensors/42/temp">>, payload(Size), #{}),
    Hook = [with_broker(Dir, fun(Broker) -> hook_run(Broker, Msg, Calls, #{}) end) || _ <- lists:seq(1, ?RUNS)],
    %% The sink receives on the other scheduler, as a real receiver would.
    Sink = spawn_opt(fun sink/0, [{scheduler, 2}]),
    Send = [timed(fun() -> send_loop(Calls, Msg, Sink) end, Calls) || _ <- lists:seq(1, ?RUNS)],
    exit(Sink, kill),
    Noop = [timed(fun() -> noop_loop(Calls, Msg) end, Calls) || _ <- lists:seq(1, ?RUNS)],
    M = fun(Runs, Kind) -> median([maps:get(Kind, R) || R <- Runs]) end,
    Each = fun(Runs, Kind) -> [round(maps:get(Kind, R)) || R <- Runs] end,
    out("hook cost~s, ~b B payload, ~b calls x ~b runs, ns per call, wall / CPU of the calling scheduler: "
        "message.publish ~.1f / ~.1f (runs ~w / ~w; minor page faults per 1000 calls ~w); Erlang ! ~.1f / ~.1f "
        "(CPU runs ~w); empty NIF ~.1f / ~.1f; hook/! ratio ~.2f / ~.2f",
        [[", " || Label =/= ""] ++ Label, Size, Calls, ?RUNS, M(Hook, wall), M(Hook, cpu), Each(Hook, wall), Each(Hook, cpu), Each(Hook, faults),
         M(Send, wall), M(Send, cpu), Each(Send, cpu), M(Noop, wall), M(Noop, cpu), M(Hook, wall) / M(Send, wall),
         M(Hook, cpu) / M(Send, cpu)]).

%% The record shape's cost (issue 37), all in one broker, interleaved:
%% the hook with today's default (the event JSON, stamped with the
%% publish time), with `timestamp = now' (the hand-over time, which lets
%% the producer hand records over in batches), and with a JSON value
%% template and three header templates; then the end-to-end rate with
%% each timestamp. Ratios are to the default.
record_shape(Dir, Size, Calls) ->
    Msg = message(<<"bench-client-1">>, <<"bench/sensors/42/temp">>, payload(Size), #{}),
    Shaped = #{<<"value">> => <<"{\"device\":${clientid},\"at\":${timestamp},\"data\":${payload}}">>,
               <<"headers">> => [#{<<"key">> => <<"source">>, <<"value">> => <<"emqx-eu-1">>},
                                 #{<<"key">> => <<"device">>, <<"value">> => <<"${clientid}">>},
                                 #{<<"key">> => <<"topic">>, <<"value">> => <<"${topic}">>}]},
    Now = #{<<"timestamp">> => <<"now">>},
    Variants = [{default, #{}}, {now, Now}, {shaped, Shaped}],
    Runs = with_broker(
             Dir, fun(Broker) ->
                          [[{Name, hook_run(Broker, Msg, Calls, Event)} || {Name, Event} <- Variants]
                           ++ [{{e2e, Name}, e2e_run(Broker, Msg, Calls, Event)}
                               || {Name, Event} <- [{default, #{}}, {now, Now}]]
                           || _ <- lists:seq(1, ?RUNS)]
                  end),
    Figure = fun(#{cpu := Cpu}) -> Cpu; (EventsPerSecond) -> EventsPerSecond end,
    M = fun(Key) -> median([Figure(proplists:get_value(Key, Run)) || Run <- Runs]) end,
    Runs1 = fun(Key) -> [round(Figure(proplists:get_value(Key, Run))) || Run <- Runs] end,
    out("record shape, ~b B payload, ~b calls x ~b runs: hook (CPU of the calling scheduler) default "
        "(timestamp = publish) ~.1f ns (runs ~w); "
        "timestamp = now ~.1f ns (~.2f); value template + 3 header templates ~.1f ns (~.2f); "
        "end to end default ~.1f events/s (runs ~w), timestamp = now ~.1f events/s (~.2f)",
        [Size, Calls, ?RUNS, M(default), Runs1(default), M(now), M(now) / M(default), M(shaped),
         M(shaped) / M(default), M({e2e, default}), Runs1({e2e, default}), M({e2e, now}),
         M({e2e, now}) / M({e2e, default})]).

%% ns per hook call (timed/2) with message.publish shaped by Event.
hook_run(Broker, Msg, Calls, Event) ->
    Topic = unique(<<"hook">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    Config = kafka_bridge_test_lib:config(Broker, #{<<"events">> => #{<<"message_publish">> => Event#{<<"topic">> => Topic}},
                                                    <<"buffer">> => big_buffer()}),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Config),
    T = timed(fun() -> hook_loop(Calls, Msg, emqx_plugin_kafka_bridge:bridge()) end, Calls),
    #{dropped := 0} = kafka_bridge_test_lib:wait_for_delivered(Calls, 600000),
    ok = kafka_bridge_test_lib:stop_bridge(),
    T.

e2e_run(Broker, Msg, Calls, Event) ->
    Topic = unique(<<"shape_e2e">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    bridge_rate(Broker, Topic, Msg, Calls, #{<<"events">> => #{<<"message_publish">> => Event}}).

%% #{wall, cpu, faults}: ns per call of Fun(), which makes Calls calls, run
%% in a process bound to scheduler 1; cpu is that scheduler thread's time
%% on CPU, faults its minor page faults per 1000 calls (a queue that grows
%% faults its fresh memory in, and the kernel zeroes each page).
timed(Fun, Calls) ->
    Parent = self(),
    {Pid, Ref} = spawn_opt(fun() ->
                                   Thread = scheduler_thread(erlang:system_info(scheduler_id)),
                                   {{ok, Cpu0}, Faults0} = {thread_cpu_ns(Thread), thread_minor_faults(Thread)},
                                   {Micros, _} = timer:tc(Fun),
                                   {ok, Cpu1} = thread_cpu_ns(Thread),
                                   Cpu = Cpu1 - Cpu0,
                                   Faults = thread_minor_faults(Thread) - Faults0,
                                   Parent ! {self(), #{wall => Micros * 1000 / Calls, cpu => Cpu / Calls,
                                                       faults => Faults * 1000 / Calls}}
                           end, [monitor, {scheduler, 1}]),
    receive
        {Pid, Result} -> erlang:demonitor(Ref, [flush]), Result;
        {'DOWN', Ref, process, Pid, Reason} -> error({timed, Reason})
    end.

%% The /proc/self/task entry of normal scheduler Id ("1_scheduler").
scheduler_thread(Id) ->
    Name = iolist_to_binary([integer_to_list(Id), "_scheduler"]),
    {ok, Tids} = file:list_dir("/proc/self/task"),
    [Tid] = [T || T <- Tids, {ok, Comm} <- [file:read_file(filename:join(["/proc/self/task", T, "comm"]))],
                  string:trim(Comm) =:= Name],
    Tid.

%% Field 10 of /proc/self/task/Tid/stat, counted after the name's ")".
thread_minor_faults(Tid) ->
    {ok, Stat} = file:read_file(filename:join(["/proc/self/task", Tid, "stat"])),
    [_, AfterName] = binary:split(Stat, <<") ">>),
    binary_to_integer(lists:nth(8, binary:split(AfterName, <<" ">>, [global]))).

%% {ok, Nanoseconds} thread Tid of this VM has been on CPU, or error when
%% it has exited.
thread_cpu_ns(Tid) ->
    case file:read_file(filename:join(["/proc/self/task", Tid, "schedstat"])) of
        {ok, Stat} ->
            [OnCpu | _] = binary:split(Stat, <<" ">>),
            {ok, binary_to_integer(OnCpu)};
        {error, _} ->
            error
    end.

hook_loop(0, _Msg, _Bridge) -> ok;
hook_loop(N, Msg, Bridge) ->
    {ok, _} = emqx_plugin_kafka_bridge:on_message_publish(Msg, Bridge),
    hook_loop(N - 1, Msg, Bridge).

send_loop(0, _Msg, _Pid) -> ok;
send_loop(N, Msg, Pid) ->
    Pid ! Msg,
    send_loop(N - 1, Msg, Pid).

noop_loop(0, _Msg) -> ok;
noop_loop(N, Msg) ->
    ok = emqx_plugin_kafka_bridge_nif:noop(Msg),
    noop_loop(N - 1, Msg).

sink() ->
    receive _ -> sink() end.

%%--------------------------------------------------------------------
%% 2. End to end
%%--------------------------------------------------------------------

end_to_end(Dir, Size) ->
    N = ?E2E_EVENTS,
    Msg = message(<<"bench-client-1">>, <<"bench/sensors/42/temp">>, payload(Size), #{}),
    Values = sample_values(Dir, Msg),
    %% Interleaved, so a slow spell of this noisy machine hits all three.
    Runs = [{with_broker(Dir, fun(Broker) -> bridge_rate(Broker, Msg, N, big_buffer()) end),
             with_broker(Dir, fun(Broker) -> bridge_rate(Broker, Msg, N, disk_buffer(Dir)) end),
             with_broker(Dir, fun(Broker) -> raw_rate(Broker, Values, N) end)}
            || _ <- lists:seq(1, ?E2E_RUNS)],
    {Bridge, Disk, Raw} = lists:unzip3(Runs),
    {B, D, R} = {median(Bridge), median(Disk), median(Raw)},
    out("end to end, ~b B payload, ~b events x ~b runs: bridge ~.1f events/s (runs ~w); "
        "raw librdkafka, rd_kafka_produce_batch x 1024 ~.1f msg/s (runs ~w); bridge/raw ~.2f",
        [Size, N, ?E2E_RUNS, B, [round(X) || X <- Bridge], R, [round(X) || X <- Raw], B / R]),
    out("end to end, ~b B payload, buffer.mode = disk, fsync = every_batch (ext4 spool): ~.1f events/s "
        "(runs ~w); disk/memory ~.2f",
        [Size, D, [round(X) || X <- Disk], D / B]).

%% The same hook loop to a listener that requires TLS and SCRAM (records
%% compressed with zstd) and to one in the clear (lz4, the default) of the
%% same broker, interleaved.
secured_end_to_end(Dir, Size) ->
    N = ?E2E_EVENTS div 3,
    Msg = message(<<"bench-client-1">>, <<"bench/sensors/42/temp">>, payload(Size), #{}),
    Topics = [unique(<<"secured">>) || _ <- lists:seq(1, ?E2E_RUNS)],
    SecDir = filename:join(Dir, "secured"),
    Password = <<"bench-scram-password">>,
    Certs = kafka_bridge_test_lib:make_certificates(filename:join(SecDir, "certs"), <<"bench-key-password">>),
    Plain = kafka_bridge_broker:start(filename:join(SecDir, "kafka"),
                                      #{secured => Certs, users => [{"alice", binary_to_list(Password)}]}),
    Secured = Plain#{client_listener => sasl_ssl},
    [ok = kafka_bridge_broker:create_topic(Plain, T) || T <- Topics],
    SaslSsl = #{<<"ssl">> => #{<<"enable">> => true, <<"ca">> => list_to_binary(maps:get(ca, Certs))},
                <<"sasl">> => #{<<"mechanism">> => <<"scram_sha_512">>, <<"username">> => <<"alice">>,
                                <<"password">> => Password},
                <<"properties">> => #{<<"compression.type">> => <<"zstd">>}},
    Runs = [{bridge_rate(Plain, T, Msg, N, #{}), bridge_rate(Secured, T, Msg, N, #{<<"kafka">> => SaslSsl})}
            || T <- Topics],
    kafka_bridge_broker:stop_all(),
    {PlainRates, SecuredRates} = lists:unzip(Runs),
    {P, S} = {median(PlainRates), median(SecuredRates)},
    out("end to end, ~b B payload, one broker, ~b events x ~b runs: plaintext + lz4 ~.1f events/s (runs ~w); "
        "SASL_SSL (SCRAM-SHA-512) + zstd ~.1f events/s (runs ~w); secured/plaintext ~.2f",
        [Size, N, ?E2E_RUNS, P, [round(X) || X <- PlainRates], S, [round(X) || X <- SecuredRates], S / P]).

bridge_rate(Broker, Msg, N, Buffer) ->
    Topic = unique(<<"e2e">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    bridge_rate(Broker, Topic, Msg, N, #{<<"buffer">> => Buffer}).

%% Events/s through the bridge to Topic, big_buffer() and Overrides merged
%% into its config.
bridge_rate(Broker, Topic, Msg, N, Overrides) ->
    Config = kafka_bridge_test_lib:config(
               Broker, kafka_bridge_test_lib:deep_merge(
                         #{<<"events">> => #{<<"message_publish">> => #{<<"topic">> => Topic}},
                           <<"buffer">> => big_buffer()}, Overrides)),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Config),
    Bridge = emqx_plugin_kafka_bridge:bridge(),
    T0 = erlang:monotonic_time(microsecond),
    hook_loop(N, Msg, Bridge),
    #{delivered := N} = wait_delivered(N),
    Rate = N / ((erlang:monotonic_time(microsecond) - T0) / 1.0e6),
    ok = kafka_bridge_test_lib:stop_bridge(),
    Rate.

%% The spool in a fresh directory on the bench's file system.
disk_buffer(Dir) ->
    SpoolDir = filename:join(Dir, binary_to_list(unique(<<"spool">>))),
    (big_buffer())#{<<"mode">> => <<"disk">>, <<"fsync">> => <<"every_batch">>,
                    <<"dir">> => list_to_binary(SpoolDir)}.

%% Polls tightly, so the end time is when the last report came in.
wait_delivered(N) ->
    M = emqx_plugin_kafka_bridge:metrics(),
    case maps:get(delivered, M) + maps:get(failed, M) >= N of
        true -> M;
        false -> timer:sleep(1), wait_delivered(N)
    end.

%% The bridge's encoded records for this payload, one per line, for the
%% raw producer to send.
sample_values(Dir, Msg) ->
    with_broker(Dir, fun(Broker) ->
                             Topic = unique(<<"sample">>),
                             ok = kafka_bridge_broker:create_topic(Broker, Topic),
                             Bridge = start_bridge(Broker, Topic, big_buffer()),
                             hook_loop(100, Msg, Bridge),
                             wait_delivered(100),
                             ok = kafka_bridge_test_lib:stop_bridge(),
                             Records = kafka_bridge_test_lib:consume(Broker, Topic, 100, 5000),
                             File = filename:join(Dir, binary_to_list(unique(<<"values">>))),
                             ok = file:write_file(File, [[V, $\n] || #{value := V} <- Records]),
                             File
                     end).

raw_rate(Broker, ValuesFile, N) ->
    Topic = unique(<<"raw">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    Tool = kafka_bridge_test_lib:kafka_tool(),
    Cmd = lists:flatten(io_lib:format("'~s' produce-raw ~s '~s' '~s' ~b ~s",
                                      [Tool, kafka_bridge_broker:bootstrap(Broker), Topic, ValuesFile, N,
                                       string:join(?PROPS, " ")])),
    {raw, N, Micros} = kafka_tool_term(Cmd),
    N / (Micros / 1.0e6).

%% The term a kafka_tool command prints; what it printed instead (its
%% error) goes into the exception.
kafka_tool_term(Cmd) ->
    Output = os:cmd(Cmd),
    case erl_scan:string(Output) of
        {ok, Tokens, _} ->
            case erl_parse:parse_term(Tokens) of
                {ok, Term} -> Term;
                {error, _} -> error({kafka_tool, Output})
            end;
        _ ->
            error({kafka_tool, Output})
    end.

%% The hook from several processes at once: the queue must not serialise them.
concurrent(Dir, Size, Procs, PerProc) ->
    Msg = message(<<"bench-client-1">>, <<"bench/sensors/42/temp">>, payload(Size), #{}),
    Rates = [with_broker(Dir, fun(Broker) ->
                                      Topic = unique(<<"conc">>),
                                      ok = kafka_bridge_broker:create_topic(Broker, Topic),
                                      Bridge = start_bridge(Broker, Topic, big_buffer()),
                                      Parent = self(),
                                      T0 = erlang:monotonic_time(microsecond),
                                      Pids = [spawn_link(fun() -> hook_loop(PerProc, Msg, Bridge), Parent ! {done, self()} end)
                                              || _ <- lists:seq(1, Procs)],
                                      [receive {done, P} -> ok end || P <- Pids],
                                      HookSecs = (erlang:monotonic_time(microsecond) - T0) / 1.0e6,
                                      #{dropped := 0} = wait_delivered(Procs * PerProc),
                                      E2E = Procs * PerProc / ((erlang:monotonic_time(microsecond) - T0) / 1.0e6),
                                      ok = kafka_bridge_test_lib:stop_bridge(),
                                      {Procs * PerProc / HookSecs, E2E}
                              end) || _ <- lists:seq(1, ?E2E_RUNS)],
    out("~b processes x ~b events, ~b B payload: hook calls ~.1f events/s, end to end ~.1f events/s (medians of ~b)",
        [Procs, PerProc, Size, median([H || {H, _} <- Rates]), median([E || {_, E} <- Rates]), ?E2E_RUNS]).

%%--------------------------------------------------------------------
%% 3. Scheduler safety
%%--------------------------------------------------------------------

scheduler_safety(Dir) ->
    Msg = message(<<"bench-client-1">>, <<"bench/big">>, payload(1024 * 1024), #{}),
    Bin = message(<<"bench-client-1">>, <<"bench/big">>, crypto:strong_rand_bytes(1024 * 1024), #{}),
    with_broker(Dir, fun(Broker) ->
                             Topic = unique(<<"big">>),
                             %% A binary 1 MB payload is a 1.4 MB record: the topic
                             %% allows the bridge's message.max.bytes.
                             ok = kafka_bridge_broker:create_topic(Broker, Topic, 3, [{"max.message.bytes", "2097152"}]),
                             Bridge = start_bridge(Broker, Topic, big_buffer()),
                             %% The hooks run in a watched process: the VM
                             %% never reports the process it reports to.
                             {ok, Ours, Reports} =
                                 kafka_bridge_test_lib:long_schedules(
                                   1, fun() -> hook_loop(500, Msg, Bridge), hook_loop(500, Bin, Bridge) end),
                             #{delivered := Delivered} = wait_delivered(1000),
                             ok = kafka_bridge_test_lib:stop_bridge(),
                             out("scheduler safety, 1000 events of 1 MB (500 text, 500 binary): "
                                 "~b long_schedule (>1 ms) reports from the hook caller, ~b in total; ~b delivered",
                                 [length(Ours), length(Reports), Delivered]),
                             [out("  ~p", [R]) || R <- lists:sublist(Reports, 5)]
                     end).

%%--------------------------------------------------------------------
%% 4. Memory
%%--------------------------------------------------------------------

memory(Dir) ->
    Port = kafka_bridge_test_lib:free_port(),
    MaxBytes = 256 * 1024 * 1024,
    Baseline = rss_kb(),
    Config = #{<<"kafka">> => #{<<"bootstrap_servers">> => iolist_to_binary(["127.0.0.1:", integer_to_list(Port)])},
               <<"buffer">> => #{<<"max_messages">> => 2000000, <<"max_bytes">> => MaxBytes, <<"flush_timeout">> => 0}},
    {ok, _} = kafka_bridge_test_lib:start_bridge(Config),
    Bridge = emqx_plugin_kafka_bridge:bridge(),
    Msg = message(<<"bench-client-1">>, <<"bench/sensors/42/temp">>, payload(200), #{}),
    hook_loop(1000000, Msg, Bridge),
    timer:sleep(2000),
    Peak = peak_rss_kb(),
    M = emqx_plugin_kafka_bridge:metrics(),
    ok = kafka_bridge_test_lib:stop_bridge(),
    Used = (Peak - Baseline) * 1024,
    out("memory, broker down, 1M events of 200 B offered, buffer.max_bytes ~b MiB: held ~b records / ~b MiB "
        "(dropped ~b); VM peak RSS ~b MiB over a ~b MiB baseline = ~.2f x budget",
        [MaxBytes div 1048576, maps:get(queue_len, M) + maps:get(inflight, M), maps:get(queue_bytes, M) div 1048576,
         maps:get(dropped_queue_full, M), Used div 1048576, Baseline div 1024, Used / MaxBytes]),
    _ = Dir.

rss_kb() -> status_kb("VmRSS").
peak_rss_kb() -> status_kb("VmHWM").

status_kb(Field) ->
    {ok, Text} = file:read_file("/proc/self/status"),
    {match, [Kb]} = re:run(Text, Field ++ ":\\s+([0-9]+) kB", [{capture, all_but_first, list}]),
    list_to_integer(Kb).
