%% @doc The durable spool (buffer.mode = disk | hybrid) against a real
%% broker: a long outage across an app restart, kill -9 of the node that
%% holds the bridge, a corrupted segment tail, a full spool, hybrid
%% spilling, and an unusable spool directory.
-module(emqx_plugin_kafka_bridge_spool_SUITE).

-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(kafka_bridge_test_lib, [consume/4, ids/1, unique/1, publish_range/3, wait_until/2, metric/1]).

all() ->
    [outage_across_restart_loses_nothing, kill_9_loses_nothing_spooled, corrupted_tail_is_skipped_and_counted,
     full_spool_counts_every_drop, a_full_disk_counts_exactly, hybrid_spills_during_outage, unusable_dir_refuses_to_start,
     stop_log_tells_delivered_from_kept, drop_oldest_then_kill_9_counts_every_loss,
     a_dir_in_use_is_refused, a_foreign_dir_is_refused_and_left_alone].

init_per_testcase(_Case, Config) ->
    kafka_bridge_test_lib:case_dirs(Config).

end_per_testcase(_Case, _Config) ->
    kafka_bridge_test_lib:stop_bridge(),
    emqx_hooks:reset(),
    kafka_bridge_broker:stop_all().

%% A broker address on a free port where nothing listens yet.
down_broker(Config) ->
    Dir = ?config(dir, Config),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    #{port => kafka_bridge_test_lib:free_port(), dir => Dir}.

bring_up(#{port := Port, dir := Dir}, Topic) ->
    Broker = kafka_bridge_broker:start(Dir, #{port => Port}),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    Broker.

bridge_config(Broker, Topic, Config, Buffer) ->
    kafka_bridge_test_lib:config(
      Broker, #{<<"events">> => #{<<"message_publish">> => #{<<"topic">> => Topic}},
                <<"buffer">> => maps:merge(#{<<"mode">> => <<"disk">>,
                                             <<"dir">> => iolist_to_binary(?config(spool_dir, Config))},
                                           Buffer)}).

start(Broker, Topic, Config, Buffer) ->
    {ok, _} = kafka_bridge_test_lib:start_bridge(bridge_config(Broker, Topic, Config, Buffer)).

wait_metric(Name, Value) ->
    ok = wait_until(fun() -> metric(Name) =:= Value end, 30000).

segments(Config) ->
    lists:sort(filelib:wildcard(binary_to_list(iolist_to_binary(filename:join(?config(spool_dir, Config), "*.seg"))))).

%%--------------------------------------------------------------------

%% The broker is down the whole time the first run bridges 100 000 events;
%% the app stops, starts again, the broker comes up: all 100 000 arrive,
%% each stamped with its publish time, which the spool kept.
outage_across_restart_loses_nothing(Config) ->
    Down = down_broker(Config),
    Topic = unique(<<"restart">>),
    N = 100000,
    Buffer = #{<<"max_messages">> => 1000000},
    start(Down, Topic, Config, Buffer),
    publish_range(1, N, <<"r/1">>),
    wait_metric(spooled, N),
    ?assertMatch(#{dropped := 0, delivered := 0}, emqx_plugin_kafka_bridge:metrics()),
    ok = kafka_bridge_test_lib:stop_bridge(),
    ?assertNotEqual([], segments(Config)),
    Broker = bring_up(Down, Topic),
    start(Broker, Topic, Config, Buffer),
    Records = consume(Broker, Topic, N, 15000),
    ?assertEqual(lists:seq(1, N), lists:usort(ids(Records))),
    Restamped = [{T, J} || #{timestamp := T, json := #{<<"timestamp">> := J}} <- Records, T =/= J],
    ?assertEqual({0, []}, {length(Restamped), lists:sublist(Restamped, 3)}),
    %% Delivered segments are deleted; only the empty active one is left.
    wait_metric(spool_bytes, 0),
    ?assertMatch(#{spool_corrupt_records := 0, dropped := 0}, emqx_plugin_kafka_bridge:metrics()).

%% A peer node bridges a stream of events in disk mode and is killed with
%% kill -9 mid-stream. Every event its metrics counted as spooled before
%% the kill arrives once a new node starts on the same spool.
kill_9_loses_nothing_spooled(Config) ->
    Broker = kafka_bridge_broker:start(?config(dir, Config)),
    Topic = unique(<<"kill9">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    BridgeConfig = bridge_config(Broker, Topic, Config, #{<<"max_messages">> => 1000000}),
    N = 40000,
    {Peer1, OsPid} = start_peer(BridgeConfig),
    _ = peer:call(Peer1, erlang, spawn, [kafka_bridge_test_lib, publish_range, [1, N, <<"k/9">>]]),
    PeerMetrics = fun() -> peer:call(Peer1, emqx_plugin_kafka_bridge, metrics, []) end,
    ok = wait_until(fun() -> maps:get(spooled, PeerMetrics()) >= N div 4 end, 30000),
    #{spooled := Spooled, dropped := 0, delivered := Delivered} = PeerMetrics(),
    os:cmd("kill -9 " ++ OsPid),
    %% Usually mid-stream; on a very slow machine the stream may be done.
    ct:log("killed the node with ~b of ~b events spooled, ~b delivered", [Spooled, N, Delivered]),
    {Peer2, _} = start_peer(BridgeConfig),
    try
        Ids = lists:usort(ids(consume(Broker, Topic, N, 10000))),
        ?assertEqual([], ordsets:subtract(lists:seq(1, Spooled), Ids)),
        ct:log("~b distinct ids arrived", [length(Ids)])
    after
        peer:call(Peer2, application, stop, [emqx_plugin_kafka_bridge]),
        peer:stop(Peer2)
    end.

%% drop_oldest on a full spool while the broker is down, then kill -9:
%% every event is delivered by the next node or counted as dropped by the
%% first. Eviction once deleted segments whose records librdkafka held
%% only in memory, and counted none of them.
drop_oldest_then_kill_9_counts_every_loss(Config) ->
    Down = down_broker(Config),
    Topic = unique(<<"evict">>),
    N = 40000,
    Buffer = #{<<"overflow">> => <<"drop_oldest">>, <<"max_messages">> => 1000000,
               <<"segment_bytes">> => <<"512KB">>, <<"max_disk_bytes">> => <<"2MB">>},
    BridgeConfig = bridge_config(Down, Topic, Config, Buffer),
    {Peer1, OsPid} = start_peer(BridgeConfig),
    ok = peer:call(Peer1, kafka_bridge_test_lib, publish_range, [1, N, <<"e/1">>], 60000),
    PeerMetrics = fun() -> peer:call(Peer1, emqx_plugin_kafka_bridge, metrics, []) end,
    %% Every event written or dropped: the queue is empty and the spool
    %% thread's counts have settled.
    Settled = fun() -> #{queue_len := Q, spooled := S, dropped_spool_full := F} = PeerMetrics(), {Q, S, F} end,
    ok = wait_until(fun() ->
                            case Settled() of
                                {0, _, _} = Now -> timer:sleep(300), Settled() =:= Now;
                                _ -> false
                            end
                    end, 30000),
    #{dropped_spool_full := Dropped, spooled := Spooled, inflight := InFlight} = PeerMetrics(),
    ct:log("spooled ~b, dropped_spool_full ~b, in librdkafka ~b", [Spooled, Dropped, InFlight]),
    ?assert(Dropped > 0),
    os:cmd("kill -9 " ++ OsPid),
    Broker = bring_up(Down, Topic),
    {Peer2, _} = start_peer(bridge_config(Broker, Topic, Config, Buffer)),
    try
        Ids = lists:usort(ids(consume(Broker, Topic, N - Dropped, 10000))),
        ct:log("~b distinct ids arrived", [length(Ids)]),
        %% drop_oldest keeps the newest.
        ?assertEqual([], ordsets:subtract(lists:seq(N - 100, N), Ids)),
        ?assert(length(Ids) + Dropped >= N)
    after
        peer:call(Peer2, application, stop, [emqx_plugin_kafka_bridge]),
        peer:stop(Peer2)
    end.

%% Two nodes on one host given the same buffer.dir replayed and deleted
%% each other's segments. The second is refused, naming buffer.dir, and
%% starts once the first has stopped.
a_dir_in_use_is_refused(Config) ->
    Down = down_broker(Config),
    BridgeConfig = bridge_config(Down, <<"t">>, Config, #{}),
    {ok, _} = kafka_bridge_test_lib:start_bridge(BridgeConfig),
    {ok, Peer, _} = peer:start(#{connection => standard_io, args => peer_code_path()}),
    try
        ok = peer:call(Peer, kafka_bridge_test_lib, set_plugin_config, [BridgeConfig]),
        Result = peer:call(Peer, application, start, [emqx_plugin_kafka_bridge]),
        ct:log("~p", [Result]),
        {error, Reason} = Result,
        Text = iolist_to_binary(io_lib:format("~p", [Reason])),
        ?assertNotEqual(nomatch, binary:match(Text, <<"buffer.dir: ">>)),
        ?assertNotEqual(nomatch, binary:match(Text, <<"is in use by another bridge">>)),
        ok = kafka_bridge_test_lib:stop_bridge(),
        ?assertEqual(ok, peer:call(Peer, application, start, [emqx_plugin_kafka_bridge])),
        peer:call(Peer, application, stop, [emqx_plugin_kafka_bridge])
    after
        peer:stop(Peer)
    end.

%% buffer.dir = a directory with other files in it (such as /tmp): the
%% spool once deleted its *.tmp files and adopted any <number>.seg. Now
%% the start is refused and every file is left as it was.
a_foreign_dir_is_refused_and_left_alone(Config) ->
    Dir = ?config(spool_dir, Config),
    Files = [{"draft.tmp", <<"an editor's autosave">>}, {"1.seg", <<"someone else's">>}],
    [ok = file:write_file(filename:join(Dir, Name), Bytes) || {Name, Bytes} <- Files,
                                                            ok <- [filelib:ensure_dir(filename:join(Dir, Name))]],
    kafka_bridge_test_lib:set_plugin_config(bridge_config(down_broker(Config), <<"t">>, Config, #{})),
    {error, Reason} = application:start(emqx_plugin_kafka_bridge),
    Text = iolist_to_binary(io_lib:format("~p", [Reason])),
    ct:log("~s", [Text]),
    ?assertNotEqual(nomatch, binary:match(Text, <<"buffer.dir: ">>)),
    ?assertNotEqual(nomatch, binary:match(Text, <<"holds files the spool did not make">>)),
    ?assertEqual(lists:sort([N || {N, _} <- Files]), lists:sort(element(2, file:list_dir(Dir)))),
    [?assertEqual({ok, Bytes}, file:read_file(filename:join(Dir, Name))) || {Name, Bytes} <- Files].

peer_code_path() ->
    ["-pa", filename:dirname(code:which(emqx_plugin_kafka_bridge)),
     "-pa", filename:dirname(code:which(emqx_hooks))].

start_peer(BridgeConfig) ->
    {ok, Peer, _Node} = peer:start(#{connection => standard_io, args => peer_code_path()}),
    ok = peer:call(Peer, kafka_bridge_test_lib, set_plugin_config, [BridgeConfig]),
    {ok, _} = peer:call(Peer, application, ensure_all_started, [emqx_plugin_kafka_bridge]),
    {Peer, peer:call(Peer, os, getpid, [])}.

%% A flipped byte in the last record of a segment: the 999 records before
%% it arrive and spool_corrupt_records counts the one skipped.
corrupted_tail_is_skipped_and_counted(Config) ->
    Down = down_broker(Config),
    Topic = unique(<<"corrupt">>),
    start(Down, Topic, Config, #{}),
    publish_range(1, 1000, <<"c/1">>),
    wait_metric(spooled, 1000),
    ok = kafka_bridge_test_lib:stop_bridge(),
    [Segment] = [S || S <- segments(Config), filelib:file_size(S) > 0],
    {ok, Bytes} = file:read_file(Segment),
    Cut = byte_size(Bytes) - 2,
    <<Head:Cut/binary, Byte, Tail/binary>> = Bytes,
    ok = file:write_file(Segment, <<Head/binary, (Byte bxor 16#ff), Tail/binary>>),
    Broker = bring_up(Down, Topic),
    start(Broker, Topic, Config, #{}),
    Ids = ids(consume(Broker, Topic, 999, 5000)),
    ?assertEqual(lists:seq(1, 999), lists:sort(Ids)),
    ?assertEqual(1, metric(spool_corrupt_records)).

%% A 256 KB spool and 5000 events while the broker is down: every event
%% is either spooled or counted in dropped_spool_full, and the spooled
%% ones (the oldest, with drop_new) all arrive later.
full_spool_counts_every_drop(Config) ->
    Down = down_broker(Config),
    Topic = unique(<<"full">>),
    N = 5000,
    Buffer = #{<<"segment_bytes">> => <<"64KB">>, <<"max_disk_bytes">> => <<"256KB">>},
    start(Down, Topic, Config, Buffer),
    publish_range(1, N, <<"f/1">>),
    ok = wait_until(fun() -> metric(spooled) + metric(dropped_spool_full) =:= N end, 30000),
    #{spooled := Spooled, dropped_spool_full := Full, dropped := Dropped, spool_bytes := SpoolBytes} =
        emqx_plugin_kafka_bridge:metrics(),
    ct:log("spooled ~b, dropped_spool_full ~b, spool_bytes ~b", [Spooled, Full, SpoolBytes]),
    ?assert(Full > 0),
    ?assertEqual(Full, Dropped),
    ?assert(SpoolBytes =< 256 * 1024),
    ok = kafka_bridge_test_lib:stop_bridge(),
    Broker = bring_up(Down, Topic),
    start(Broker, Topic, Config, Buffer),
    Ids = ids(consume(Broker, Topic, N, 5000)),
    ?assertEqual(lists:seq(1, Spooled), lists:sort(Ids)).

%% buffer.dir on an 8 MB tmpfs and the broker down: the disk fills, and a
%% write fails part-way through a batch. The records that reached the file
%% whole are delivered later; only the others are counted in
%% dropped_spool_error, so delivered + counted = sent. (Every record of a
%% failed batch was counted, including those delivered.)
a_full_disk_counts_exactly(Config) ->
    Mount = ?config(spool_dir, Config),
    ok = filelib:ensure_dir(filename:join(Mount, "x")),
    case kafka_bridge_test_lib:shell(["mount -t tmpfs -o size=8m kafka_bridge_test '", Mount, "'"]) of
        {ok, _} ->
            try full_disk(Config)
            after
                kafka_bridge_test_lib:stop_bridge(),
                {ok, _} = kafka_bridge_test_lib:shell(["umount '", Mount, "'"])
            end;
        {error, Out} ->
            {skip, "mounting a tmpfs needs root: " ++ Out}
    end.

full_disk(Config) ->
    Down = down_broker(Config),
    Topic = unique(<<"disk_full">>),
    N = 30000,
    Payload = binary:copy(<<"p">>, 1000),
    start(Down, Topic, Config, #{<<"max_disk_bytes">> => <<"1GB">>}),
    [kafka_bridge_test_lib:publish(kafka_bridge_test_lib:message(<<"c1">>, <<"f/1">>, Payload, #{id => <<I:128>>}))
     || I <- lists:seq(1, N)],
    ok = wait_until(fun() -> metric(spooled) + metric(dropped) =:= N end, 60000),
    #{dropped_spool_error := Failed, dropped := Lost} = M = emqx_plugin_kafka_bridge:metrics(),
    ct:log("~p", [M]),
    ?assert(Failed > 0),
    ok = kafka_bridge_test_lib:stop_bridge(),
    Broker = bring_up(Down, Topic),
    start(Broker, Topic, Config, #{<<"max_disk_bytes">> => <<"1GB">>}),
    Ids = ids(consume(Broker, Topic, N - Lost, 5000)),
    ct:log("~b arrived, ~b counted lost (~b dropped_spool_error)", [length(Ids), Lost, Failed]),
    ?assertEqual(length(Ids), length(lists:usort(Ids))),
    ?assertEqual(N, length(Ids) + Lost).

%% hybrid: events go straight to Kafka while it is up; after
%% buffer.spill_after of outage they go to disk, and all arrive once the
%% broker is back.
hybrid_spills_during_outage(Config) ->
    Broker = kafka_bridge_broker:start(?config(dir, Config)),
    Topic = unique(<<"hybrid">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    start(Broker, Topic, Config, #{<<"mode">> => <<"hybrid">>, <<"spill_after">> => <<"500ms">>}),
    publish_range(1, 1000, <<"h/1">>),
    #{delivered := 1000} = kafka_bridge_test_lib:wait_for_delivered(1000, 30000),
    ?assertEqual(0, metric(spooled)),
    kafka_bridge_broker:kill(Broker),
    ok = wait_until(fun() -> maps:get(state, emqx_plugin_kafka_bridge:status()) =/= connected end, 30000),
    timer:sleep(1000),
    publish_range(1001, 3000, <<"h/1">>),
    wait_metric(spooled, 2000),
    kafka_bridge_broker:restart(Broker),
    Ids = ids(consume(Broker, Topic, 3000, 10000)),
    ?assertEqual(lists:seq(1, 3000), lists:usort(Ids)),
    %% Delivered, so acknowledged in the spool.
    wait_metric(spool_backlog_bytes, 0),
    ?assertEqual(0, metric(dropped)).

%% The only reason to refuse a start: a spool directory that cannot be
%% written, named in the error.
unusable_dir_refuses_to_start(Config) ->
    Broker = down_broker(Config),
    Bad = bridge_config(Broker, <<"t">>, Config, #{<<"dir">> => <<"/proc/version/spool">>}),
    kafka_bridge_test_lib:set_plugin_config(Bad),
    Result = application:start(emqx_plugin_kafka_bridge),
    ct:log("~p", [Result]),
    {error, Reason} = Result,
    Text = iolist_to_binary(io_lib:format("~p", [Reason])),
    ?assertNotEqual(nomatch, binary:match(Text, <<"buffer.dir: cannot write to \\\"/proc/version/spool\\\"">>)),
    ?assertEqual(undefined, whereis(emqx_plugin_kafka_bridge_sup)).

%% The stop log says what is left: nothing once Kafka acknowledged every
%% record (the spool's files may still hold settled records), the backlog
%% when the broker is down.
stop_log_tells_delivered_from_kept(Config) ->
    Down = down_broker(Config),
    Topic = unique(<<"stoplog">>),
    Broker = bring_up(Down, Topic),
    start(Broker, Topic, Config, #{}),
    kafka_bridge_test_lib:publish_range(1, 1000, <<"s/1">>),
    wait_metric(delivered, 1000),
    ?assert(metric(spool_bytes) > 0),
    kafka_bridge_test_lib:capture_logs(),
    %% The stop lines are at info level.
    #{level := Level} = logger:get_primary_config(),
    ok = logger:set_primary_config(level, info),
    try stop_logs(Broker, Topic, Config)
    after logger:set_primary_config(level, Level)
    end.

stop_logs(Broker, Topic, Config) ->
    ok = kafka_bridge_test_lib:stop_bridge(),
    Delivered = kafka_bridge_test_lib:captured_logs(),
    ct:log("~p", [Delivered]),
    ?assert(lists:any(fun(L) -> binary:match(L, <<"every event delivered">>) =/= nomatch end, Delivered)),
    ?assertNot(lists:any(fun(L) -> binary:match(L, <<"kept in the spool">>) =/= nomatch end, Delivered)),
    kafka_bridge_broker:stop(Broker),
    start(Broker, Topic, Config, #{<<"flush_timeout">> => 0}),
    kafka_bridge_test_lib:publish_range(1001, 1100, <<"s/1">>),
    wait_metric(spooled, 100),
    ok = kafka_bridge_test_lib:stop_bridge(),
    Kept = kafka_bridge_test_lib:captured_logs(),
    ct:log("~p", [Kept]),
    ?assert(lists:any(fun(L) -> binary:match(L, <<"kept in the spool">>) =/= nomatch end, Kept)).
