%% @doc Failover on a 3-broker Apache Kafka cluster (KRaft, every node a
%% broker and a controller voter, replication factor 3,
%% min.insync.replicas 2), while events flow through the hooks at about
%% 5 000/s keyed by clientid: a leader killed, a rolling restart, two of
%% three brokers down, the whole cluster down, a frozen broker and a stop
%% during a leader election. Every id is read back from Kafka: delivered
%% plus counted drops is what was sent and, unless a case says otherwise,
%% none is written twice and each partition holds its ids in order.
-module(emqx_plugin_kafka_bridge_cluster_SUITE).

-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(kafka_bridge_test_lib, [consume/4, unique/1, publish_range/3]).

all() ->
    [leader_killed_and_back, rolling_restart, broker_frozen, {group, memory}, {group, disk}, {group, hybrid}].

groups() ->
    Cases = [two_brokers_down, two_brokers_down_past_message_timeout, whole_cluster_down, stop_during_election],
    [{Mode, [], Cases} || Mode <- [memory, disk, hybrid]].

init_per_group(Mode, Config) ->
    [{mode, atom_to_binary(Mode)} | Config].

end_per_group(_Mode, _Config) ->
    ok.

%% Each case has a cluster of its own and a topic of three partitions on
%% it; the cases outside the mode groups run in memory mode.
init_per_testcase(_Case, Config0) ->
    Config = kafka_bridge_test_lib:case_dirs(Config0),
    Mode = [{mode, <<"memory">>} || ?config(mode, Config) =:= undefined],
    Cluster = kafka_bridge_broker:start_cluster(?config(dir, Config), #{}),
    Topic = unique(<<"failover">>),
    ok = kafka_bridge_broker:create_topic(Cluster, Topic),
    [{cluster, Cluster}, {topic, Topic} | Mode ++ Config].

end_per_testcase(_Case, _Config) ->
    kafka_bridge_test_lib:stop_bridge(),
    emqx_hooks:reset(),
    kafka_bridge_broker:stop_all().

%% Starts the bridge on the case's cluster, in the case's mode.
start(Config, Overrides) ->
    Base = #{<<"events">> => #{<<"message_publish">> => #{<<"topic">> => ?config(topic, Config)}},
             <<"buffer">> => #{<<"mode">> => ?config(mode, Config),
                               <<"dir">> => iolist_to_binary(?config(spool_dir, Config))}},
    Bridge = kafka_bridge_test_lib:config(?config(cluster, Config), kafka_bridge_test_lib:deep_merge(Base, Overrides)),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Bridge).

brokers(Config) ->
    maps:get(brokers, ?config(cluster, Config)).

%%--------------------------------------------------------------------
%% Steady load and what status() said meanwhile
%%--------------------------------------------------------------------

%% A process publishing ids from 1 through the message.publish hook, 100
%% every 20 ms (about 5 000/s, 97 clients as keys), and sampling status()
%% every 25th time (500 ms), until stop_load/1.
start_load() ->
    Self = self(),
    spawn_link(fun() -> load_loop(Self, 1, erlang:monotonic_time(millisecond), 0, []) end).

load_loop(Parent, Next, Tick, LongestMicros, Statuses) ->
    {Micros, ok} = timer:tc(fun() -> publish_range(Next, Next + 99, <<"fail/over">>) end),
    Statuses1 = case (Next div 100) rem 25 of
                    0 -> [{erlang:monotonic_time(millisecond), emqx_plugin_kafka_bridge:status()} | Statuses];
                    _ -> Statuses
                end,
    NextTick = Tick + 20,
    receive {stop, Parent} -> Parent ! {load, Next + 99, max(LongestMicros, Micros), lists:reverse(Statuses1)}
    after max(0, NextTick - erlang:monotonic_time(millisecond)) ->
            load_loop(Parent, Next + 100, NextTick, max(LongestMicros, Micros), Statuses1)
    end.

%% Stops the load: the last id sent, the longest 100 hook calls took (µs),
%% and the statuses seen as [{MonotonicMs, Status}].
stop_load(Load) ->
    Load ! {stop, self()},
    receive {load, Last, Longest, Statuses} -> {Last, Longest, Statuses} end.

now_ms() ->
    erlang:monotonic_time(millisecond).

%% The statuses sampled between From and To (monotonic ms), logged.
statuses_between(Statuses, From, To) ->
    Seen = [S || {T, S} <- Statuses, T >= From, T =< To],
    Shown = [maps:with([state, brokers_down, brokers_not_answering, partitions_waiting], S) || S <- Seen],
    ct:log("~b statuses sampled, ~b distinct:~n~p", [length(Seen), length(lists:usort(Shown)), lists:usort(Shown)]),
    Seen.

%% Some status sampled between From and To has, in Field (a list of
%% texts), one that contains each of Texts.
assert_named(Statuses, From, To, Field, Texts) ->
    Seen = statuses_between(Statuses, From, To),
    Named = fun(S) -> lists:all(fun(T) -> lists:any(fun(E) -> string:find(E, T) =/= nomatch end,
                                                    maps:get(Field, S)) end, Texts) end,
    ?assert(lists:any(Named, Seen), {Field, Texts}).

%% The name status() gives a broker: "127.0.0.1:PORT (node ID)".
broker_name(#{port := Port, node_id := Id}) ->
    iolist_to_binary(["127.0.0.1:", integer_to_list(Port), " (node ", integer_to_list(Id), ")"]).

%% The bridge says it is connected and all is well, by itself.
assert_recovered() ->
    Healthy = fun() ->
                      case emqx_plugin_kafka_bridge:status() of
                          #{state := connected, brokers_down := [], brokers_not_answering := [],
                            partitions_waiting := []} -> true;
                          _ -> false
                      end
              end,
    ?assertEqual(ok, kafka_bridge_test_lib:wait_until(Healthy, 30000), emqx_plugin_kafka_bridge:status()).

%% Every id from 1 to Sent is read once from the topic, each partition in
%% order, and the metrics agree.
assert_all_delivered(Config, Sent) ->
    Metrics = kafka_bridge_test_lib:wait_for_delivered(Sent, 180000),
    ct:log("metrics: ~p", [Metrics]),
    ?assertMatch(#{received := Sent, delivered := Sent, failed := 0, dropped := 0}, Metrics),
    assert_recovered(),
    Records = consume(?config(cluster, Config), ?config(topic, Config), Sent, 10000),
    kafka_bridge_test_lib:assert_once_in_order(Records, lists:seq(1, Sent)).

%% The leader of the partition that holds the most records.
busiest_leader(Config) ->
    {_, Leader} = lists:max([{End, Leader} || {_, Leader, _, _, End} <- describe(Config)]),
    Leader.

describe(Config) ->
    kafka_bridge_broker:describe_topic(?config(cluster, Config), ?config(topic, Config)).

broker(Config, NodeId) ->
    hd([B || B = #{node_id := Id} <- brokers(Config), Id =:= NodeId]).

%%--------------------------------------------------------------------

%% kill -9 of the leader of the busiest partition mid-stream, back 20 s
%% later: leadership moves, nothing is lost or written twice.
leader_killed_and_back(Config) ->
    start(Config, #{}),
    Load = start_load(),
    timer:sleep(3000),
    Leader = broker(Config, busiest_leader(Config)),
    kafka_bridge_broker:kill(Leader),
    Killed = now_ms(),
    timer:sleep(20000),
    _ = kafka_bridge_broker:restart(Leader),
    timer:sleep(5000),
    {Sent, Longest, Statuses} = stop_load(Load),
    ct:log("sent ~b; longest 100 hook calls ~b us; topic now ~p", [Sent, Longest, describe(Config)]),
    assert_named(Statuses, Killed, Killed + 20000, brokers_down, [broker_name(Leader)]),
    assert_all_delivered(Config, Sent).

%% Each broker in turn shut down (SIGTERM, Kafka's controlled shutdown)
%% and started again, the next one only once every partition has three
%% replicas in sync again, as an upgrade goes. Leadership moves before a
%% broker goes, so no record waits on it and librdkafka reports nothing:
%% status() may name the broker down while it restarts, and no other.
rolling_restart(Config) ->
    start(Config, #{}),
    Load = start_load(),
    timer:sleep(3000),
    Restarts = [begin
                    Down = now_ms(),
                    _ = kafka_bridge_broker:restart(kafka_bridge_broker:shut_down(Broker)),
                    ok = wait_in_sync(Config, 60000),
                    {Broker, Down, now_ms()}
                end || Broker <- brokers(Config)],
    timer:sleep(3000),
    {Sent, Longest, Statuses} = stop_load(Load),
    ct:log("sent ~b; longest 100 hook calls ~b us", [Sent, Longest]),
    [?assertEqual([], [S || {T, S = #{brokers_down := Named}} <- Statuses, T >= Down, T =< Up,
                            Named -- [broker_name(Broker)] =/= []])
     || {Broker, Down, Up} <- Restarts],
    assert_all_delivered(Config, Sent).

wait_in_sync(Config, Timeout) ->
    kafka_bridge_test_lib:wait_until(
      fun() -> lists:all(fun({_, _, Replicas, Isr, _}) -> length(Isr) =:= length(Replicas) end, describe(Config)) end,
      Timeout).

%% One broker frozen (SIGSTOP) for 30 s, as a long GC pause or a cut
%% network: it holds its connections and answers nothing, so only
%% timeouts notice. Publishing never waits on it.
broker_frozen(Config) ->
    start(Config, #{}),
    Load = start_load(),
    timer:sleep(3000),
    Leader = broker(Config, busiest_leader(Config)),
    kafka_bridge_broker:pause(Leader),
    Frozen = now_ms(),
    timer:sleep(30000),
    kafka_bridge_broker:resume(Leader),
    timer:sleep(5000),
    {Sent, Longest, Statuses} = stop_load(Load),
    ct:log("sent ~b; longest 100 hook calls ~b us", [Sent, Longest]),
    assert_named(Statuses, Frozen, Frozen + 30000, brokers_not_answering, [broker_name(Leader)]),
    assert_named(Statuses, Frozen, Frozen + 30000, partitions_waiting, [<<"leader ", (broker_name(Leader))/binary, " not answering">>]),
    ?assert(Longest < 1000000),
    assert_all_delivered(Config, Sent).

%% Two of three brokers killed for 30 s: the partitions' in-sync replicas
%% fall below min.insync.replicas and the controller quorum is lost.
%% Records wait and are retried; afterwards every one is delivered.
two_brokers_down(Config) ->
    %% Room for the whole outage in every mode (memory mode's default
    %% budget, 100 000 records, is 20 s of this load).
    start(Config, #{<<"buffer">> => #{<<"max_messages">> => 1000000}}),
    Load = start_load(),
    timer:sleep(3000),
    [B1, B2, B3] = brokers(Config),
    Down = two_down_for_30_s(B2, B3),
    {Sent, Longest, Statuses} = stop_load(Load),
    ct:log("sent ~b; longest 100 hook calls ~b us", [Sent, Longest]),
    assert_named(Statuses, Down, Down + 30000, brokers_down, [broker_name(B2), broker_name(B3)]),
    %% The survivor leads a partition it cannot commit to: it either holds
    %% the requests (its ISR still names the dead) or refuses them with
    %% NOT_ENOUGH_REPLICAS (its ISR shrank first); each run sees one.
    assert_named(Statuses, Down, Down + 30000, partitions_waiting, [<<"leader ", (broker_name(B1))/binary>>]),
    assert_all_delivered(Config, Sent).

%% Kills two brokers, starts them again 30 s later and waits 5 s more;
%% returns when they went down (monotonic ms).
two_down_for_30_s(B2, B3) ->
    kafka_bridge_broker:kill(B2),
    kafka_bridge_broker:kill(B3),
    Down = now_ms(),
    timer:sleep(30000),
    _ = kafka_bridge_broker:restart([B2, B3]),
    timer:sleep(5000),
    Down.

%% The same with message.timeout.ms (10 s) shorter than the outage:
%% what librdkafka gives up on is counted in `failed' (in every mode: the
%% spool settles it too), and every id Kafka lacks is among them. A record
%% given up on while its request was with the leader may still be written
%% once the replicas return, and after a timeout librdkafka starts a new
%% idempotent sequence, so a record it was still retrying may be written
%% twice: the reason message.timeout.ms is 0 by default.
two_brokers_down_past_message_timeout(Config) ->
    start(Config, #{<<"kafka">> => #{<<"properties">> => #{<<"message.timeout.ms">> => <<"10000">>}},
                    <<"buffer">> => #{<<"max_messages">> => 1000000}}),
    Load = start_load(),
    timer:sleep(3000),
    [_, B2, B3] = brokers(Config),
    _ = two_down_for_30_s(B2, B3),
    {Sent, _, _} = stop_load(Load),
    Metrics = kafka_bridge_test_lib:wait_for_delivered(Sent, 180000),
    ct:log("sent ~b; metrics: ~p", [Sent, Metrics]),
    #{received := Sent, delivered := Delivered, failed := Failed, dropped := 0} = Metrics,
    ?assertEqual(Sent, Delivered + Failed),
    ?assert(Failed > 0),
    assert_recovered(),
    Read = kafka_bridge_test_lib:ids(consume(?config(cluster, Config), ?config(topic, Config), Delivered, 10000)),
    Distinct = lists:usort(Read),
    ct:comment("~b sent, ~b delivered, ~b failed; ~b read, ~b distinct",
               [Sent, Delivered, Failed, length(Read), length(Distinct)]),
    ?assert(length(Distinct) >= Delivered),
    ?assert(Sent - length(Distinct) =< Failed),
    ?assertEqual([], ordsets:subtract(Distinct, lists:seq(1, Sent))).

%% All three brokers killed for 60 s. In memory mode the default budget
%% (100 000 records) is smaller than the outage: what it could not hold is
%% counted in dropped_queue_full and is exactly what Kafka lacks. The
%% spool modes hold it all.
whole_cluster_down(Config) ->
    start(Config, #{}),
    Load = start_load(),
    timer:sleep(3000),
    [kafka_bridge_broker:kill(B) || B <- brokers(Config)],
    Down = now_ms(),
    timer:sleep(60000),
    _ = kafka_bridge_broker:restart(brokers(Config)),
    timer:sleep(5000),
    {Sent, Longest, Statuses} = stop_load(Load),
    ct:log("sent ~b; longest 100 hook calls ~b us", [Sent, Longest]),
    ?assert(lists:any(fun(#{state := State}) -> State =:= disconnected end, statuses_between(Statuses, Down, Down + 60000))),
    assert_named(Statuses, Down, Down + 60000, brokers_down, [broker_name(B) || B <- brokers(Config)]),
    case ?config(mode, Config) of
        <<"memory">> ->
            #{dropped_queue_full := Dropped} = emqx_plugin_kafka_bridge:metrics(),
            Metrics = kafka_bridge_test_lib:wait_for_delivered(Sent - Dropped, 180000),
            ct:log("metrics: ~p", [Metrics]),
            ?assert(Dropped > 0),
            ?assertMatch(#{received := Sent, failed := 0, dropped := Dropped}, Metrics),
            ?assertEqual(Sent, maps:get(delivered, Metrics) + Dropped),
            assert_recovered(),
            Read = kafka_bridge_test_lib:ids(consume(?config(cluster, Config), ?config(topic, Config), Sent - Dropped, 10000)),
            ?assertEqual(Sent - Dropped, length(lists:usort(Read))),
            ?assertEqual(Sent - Dropped, length(Read));
        _ ->
            assert_all_delivered(Config, Sent)
    end.

%% The bridge stopped gracefully right after the leader of the busiest
%% partition was killed, while its partitions elect a new leader. In
%% memory mode what stop could not deliver within flush_timeout is counted
%% in dropped_on_stop; in the spool modes it stays in the spool, and the
%% next start delivers it.
stop_during_election(Config) ->
    start(Config, #{}),
    Load = start_load(),
    timer:sleep(3000),
    kafka_bridge_broker:kill(broker(Config, busiest_leader(Config))),
    timer:sleep(500),
    {Sent, _, _} = stop_load(Load),
    ok = kafka_bridge_test_lib:stop_bridge(),
    Stopped = emqx_plugin_kafka_bridge:metrics(),
    ct:log("sent ~b; after stop: ~p", [Sent, Stopped]),
    #{received := Sent, delivered := Delivered, dropped_on_stop := OnStop, failed := 0} = Stopped,
    case ?config(mode, Config) of
        <<"memory">> ->
            ?assertEqual(Sent, Delivered + OnStop),
            Read = kafka_bridge_test_lib:ids(consume(?config(cluster, Config), ?config(topic, Config), Delivered, 10000)),
            ct:log("~b read, ~b distinct", [length(Read), length(lists:usort(Read))]),
            ?assertEqual(length(Read), length(lists:usort(Read))),
            ?assert(Sent - length(Read) =< OnStop);
        _ ->
            ?assertEqual(0, OnStop),
            start(Config, #{}),
            Records = consume(?config(cluster, Config), ?config(topic, Config), Sent, 10000),
            Read = kafka_bridge_test_lib:ids(Records),
            ct:log("~b read, ~b distinct", [length(Read), length(lists:usort(Read))]),
            ?assertEqual(lists:seq(1, Sent), lists:usort(Read))
    end.
