%% @doc The plugin as EMQX 5 runs it: the tarball, loading from the
%% unpacked package alone, config sources, live reconfiguration, health
%% checks and the ctl command.
-module(emqx_plugin_kafka_bridge_plugin_SUITE).

-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(kafka_bridge_test_lib, [message/3, message/4, consume/4, ids/1, unique/1, metric/1]).

-define(NAME_VSN, "emqx_plugin_kafka_bridge-0.1.0").

all() ->
    [tarball_layout_and_release_json, one_nif_per_architecture, no_nif_for_the_host_architecture,
     app_starts_from_unpacked_tarball, config_from_emqx_5_8,
     config_from_emqx_5_9, config_source_failure_is_an_error,
     config_file_from_env_var, config_changes_are_validated, unappliable_config_keeps_last_good,
     buffer_changes_apply_live, hot_reload_routes_loses_nothing,
     hot_reload_enables_and_disables_hooks, hot_reload_broker_address,
     config_fix_while_kafka_is_down_answers_at_once, health_check_states,
     ctl_commands, ctl_registered_only_while_running, plugin_api_calls,
     nif_reload_keeps_the_running_bridge].

init_per_suite(Config) ->
    Priv = ?config(priv_dir, Config),
    emqx_plugins:set_dirs(filename:join(Priv, "plugins"), filename:join(Priv, "data")),
    Broker = kafka_bridge_broker:start(filename:join(Priv, "broker")),
    [{broker, Broker} | Config].

end_per_suite(Config) ->
    kafka_bridge_broker:stop(?config(broker, Config)).

end_per_testcase(_Case, _Config) ->
    kafka_bridge_test_lib:stop_bridge(),
    emqx_hooks:reset(),
    emqx_ctl:reset(),
    emqx_plugins:set_line(v5_8),
    emqx_plugins:set_config(list_to_binary(?NAME_VSN), #{}),
    os:unsetenv("EMQX_KAFKA_BRIDGE_CONFIG").

publish(From, Topic, I) ->
    kafka_bridge_test_lib:publish(message(From, Topic, integer_to_binary(I), #{id => <<I:128>>})).

topic(Config) ->
    Topic = unique(<<"plugin">>),
    ok = kafka_bridge_broker:create_topic(?config(broker, Config), Topic),
    Topic.

publish_config(Config, Topic, Overrides) ->
    kafka_bridge_test_lib:config(?config(broker, Config),
                                 kafka_bridge_test_lib:deep_merge(
                                   #{<<"events">> => #{<<"message_publish">> => #{<<"topic">> => Topic}}},
                                   Overrides)).

json_file(Path) ->
    Tool = kafka_bridge_test_lib:kafka_tool(),
    Out = Path ++ ".term",
    "" = os:cmd(Tool ++ " json-term '" ++ Path ++ "' '" ++ Out ++ "' 2>&1"),
    {ok, Bin} = file:read_file(Out),
    binary_to_term(Bin).

unpack_tarball(Config) ->
    Tarball = filename:join([kafka_bridge_test_lib:project_root(), "_build", "plugins", ?NAME_VSN ++ ".tar.gz"]),
    Dir = filename:join(?config(priv_dir, Config), binary_to_list(unique(<<"unpacked">>))),
    ok = erl_tar:extract(Tarball, [{cwd, Dir}, compressed]),
    {Tarball, Dir}.

%%--------------------------------------------------------------------

tarball_layout_and_release_json(Config) ->
    {Tarball, Dir} = unpack_tarball(Config),
    {ok, Sha} = file:read_file(Tarball ++ ".sha256"),
    {ok, Bytes} = file:read_file(Tarball),
    Hex = binary:encode_hex(crypto:hash(sha256, Bytes)),
    ?assertEqual(string:lowercase(Hex), hd(binary:split(Sha, <<" ">>))),
    ?assertEqual({ok, [?NAME_VSN]}, file:list_dir(Dir)),
    Top = filename:join(Dir, ?NAME_VSN),
    {ok, TopFiles} = file:list_dir(Top),
    ?assertEqual(["README.md", "emqx_plugin_kafka_bridge-0.1.0", "release.json"], lists:sort(TopFiles)),
    App = filename:join(Top, "emqx_plugin_kafka_bridge-0.1.0"),
    ?assertEqual({ok, ["ebin", "priv"]}, sort(file:list_dir(App))),
    {ok, Priv} = file:list_dir(filename:join(App, "priv")),
    ?assertEqual(["aarch64", "config.hocon", "config_i18n.json", "config_schema.avsc", "x86_64"], lists:sort(Priv)),
    [?assertEqual({ok, ["libkafka_bridge_nif.so"]}, file:list_dir(filename:join([App, "priv", Arch])))
     || Arch <- ["aarch64", "x86_64"]],
    {ok, Ebin} = file:list_dir(filename:join(App, "ebin")),
    ?assert(lists:member("emqx_plugin_kafka_bridge.app", Ebin)),
    ?assert(lists:member("emqx_plugin_kafka_bridge_app.beam", Ebin)),
    ?assertNot(lists:member("emqx_hooks.beam", Ebin)),
    Release = json_file(filename:join(Top, "release.json")),
    ct:log("release.json: ~p", [Release]),
    ?assertMatch(#{<<"name">> := <<"emqx_plugin_kafka_bridge">>, <<"rel_vsn">> := <<"0.1.0">>,
                   <<"rel_apps">> := [<<"emqx_plugin_kafka_bridge-0.1.0">>], <<"description">> := <<_/binary>>,
                   <<"authors">> := [_ | _], <<"builder">> := #{<<"name">> := _, <<"contact">> := _, <<"website">> := _},
                   <<"repo">> := <<_/binary>>, <<"functionality">> := [_ | _],
                   <<"compatibility">> := #{<<"emqx">> := _}, <<"metadata_vsn">> := <<"0.2.0">>,
                   <<"with_config_schema">> := true, <<"git_ref">> := <<_/binary>>}, Release),
    %% EMQX only shows the field (5.8.9 and 6.2.2 check nothing against
    %% it); read as the Elixir-style requirement its `~>` comes from, it
    %% admits every line the plugin runs on: 5.7 and later, 6.x included.
    #{<<"compatibility">> := #{<<"emqx">> := Requirement}} = Release,
    [?assertEqual({V, Admitted}, {V, satisfies(V, Requirement)})
     || {V, Admitted} <- [{"5.7.0", true}, {"5.8.9", true}, {"5.9.1", true}, {"6.2.2", true}, {"5.6.2", false}]],
    ?assertEqual(list_to_binary(erlang:system_info(otp_release)), maps:get(<<"built_on_otp_release">>, Release)),
    #{<<"name">> := Name, <<"rel_vsn">> := Vsn} = Release,
    ?assertEqual(list_to_binary(?NAME_VSN), <<Name/binary, "-", Vsn/binary>>).

sort({ok, L}) -> {ok, lists:sort(L)}.

%% Version against an Elixir-style requirement: `>= X.Y.Z', or `~> X.Y'
%% (at least X.Y, below X+1) and `~> X.Y.Z' (at least X.Y.Z, below X.Y+1).
satisfies(Version, Requirement) ->
    V = parts(Version),
    case string:split(string:trim(binary_to_list(Requirement)), " ", leading) of
        [">=", Min] -> V >= pad(parts(string:trim(Min)));
        _ ->
            case string:trim(binary_to_list(Requirement)) of
                "~>" ++ Min0 ->
                    Min = parts(string:trim(Min0)),
                    Upper = case Min of
                                [Major, _] -> [Major + 1, 0, 0];
                                [Major, Minor, _] -> [Major, Minor + 1, 0]
                            end,
                    V >= pad(Min) andalso V < Upper;
                Other -> error({unknown_requirement, Other})
            end
    end.

parts(Text) -> [list_to_integer(P) || P <- string:split(Text, ".", all)].

pad(Parts) -> Parts ++ lists:duplicate(3 - length(Parts), 0).

%% A fresh VM whose code path has only OTP, the unpacked package and the
%% test stand-ins: the NIF loads from the package and events reach Kafka.
%% The loader picks priv/ARCH/ from the VM's system_architecture (as
%% EMQX's Linux packages report it) and names what is missing.
one_nif_per_architecture(Config) ->
    {_, Dir} = unpack_tarball(Config),
    Priv = filename:join([Dir, ?NAME_VSN, ?NAME_VSN, "priv"]),
    Path = fun(SystemArchitecture, Os) ->
                   emqx_plugin_kafka_bridge_nif:library_path(Priv, SystemArchitecture, Os)
           end,
    ?assertEqual({ok, filename:join([Priv, "x86_64", "libkafka_bridge_nif"])},
                 Path("x86_64-pc-linux-gnu", {unix, linux})),
    ?assertEqual({ok, filename:join([Priv, "aarch64", "libkafka_bridge_nif"])},
                 Path("aarch64-unknown-linux-gnu", {unix, linux})),
    ?assertEqual({error, {no_nif_for_architecture, <<"riscv64">>, [<<"aarch64">>, <<"x86_64">>]}},
                 Path("riscv64-unknown-linux-gnu", {unix, linux})),
    ?assertEqual({error, {linux_only, {unix, darwin}, <<"aarch64-apple-darwin23.4.0">>}},
                 Path("aarch64-apple-darwin23.4.0", {unix, darwin})),
    %% This VM loaded the portable x86_64 build the tarball ships.
    ?assertMatch("x86_64-" ++ _, erlang:system_info(system_architecture)),
    ?assertEqual(ok, emqx_plugin_kafka_bridge_nif:noop(x)).

%% A package without a .so for this host: `plugins start' fails and says
%% which architecture is missing and which the package has.
no_nif_for_the_host_architecture(Config) ->
    {Tarball, Dir} = unpack_tarball(Config),
    Install = filename:join(Dir, "install"),
    App = filename:join([Dir, ?NAME_VSN, ?NAME_VSN]),
    ok = file:del_dir_r(filename:join([App, "priv", "x86_64"])),
    Peer = kafka_bridge_test_lib:plugin_node(Install, filename:join(Dir, "data")),
    try
        ok = erl_tar:create(filename:join(Install, filename:basename(Tarball)),
                            [{?NAME_VSN, filename:join(Dir, ?NAME_VSN)}], [compressed]),
        ok = peer:call(Peer, emqx_plugins, ensure_installed, [?NAME_VSN]),
        {error, #{reason := Reason}} = peer:call(Peer, emqx_plugins, ensure_started, [?NAME_VSN], 60000),
        ct:log("start without an x86_64 .so: ~p", [Reason]),
        Text = lists:flatten(io_lib:format("~p", [Reason])),
        ?assertNotEqual(nomatch, string:find(Text, "{no_nif_for_architecture,<<\"x86_64\">>,[<<\"aarch64\">>]}"))
    after
        peer:stop(Peer)
    end.

app_starts_from_unpacked_tarball(Config) ->
    {_, Dir} = unpack_tarball(Config),
    Ebin = filename:join([Dir, ?NAME_VSN, "emqx_plugin_kafka_bridge-0.1.0", "ebin"]),
    TestEbin = filename:dirname(code:which(emqx_hooks)),
    {ok, Peer, _Node} = peer:start_link(#{connection => standard_io,
                                           args => ["-pa", Ebin, "-pa", TestEbin]}),
    try
        Topic = topic(Config),
        {module, _} = peer:call(Peer, code, ensure_loaded, [emqx_plugin_kafka_bridge_nif]),
        Which = peer:call(Peer, code, which, [emqx_plugin_kafka_bridge_nif]),
        ?assertEqual(filename:join(Ebin, "emqx_plugin_kafka_bridge_nif.beam"), Which),
        ok = peer:call(Peer, kafka_bridge_test_lib, set_plugin_config, [publish_config(Config, Topic, #{})]),
        {ok, _} = peer:call(Peer, application, ensure_all_started, [emqx_plugin_kafka_bridge]),
        Msg = message(<<"peer">>, <<"from/peer">>, <<"hello from the package">>),
        Msg = peer:call(Peer, emqx_hooks, run_fold, ['message.publish', [], Msg]),
        ok = peer:call(Peer, application, stop, [emqx_plugin_kafka_bridge]),
        [#{json := Json}] = consume(?config(broker, Config), Topic, 1, 5000),
        ?assertEqual(<<"hello from the package">>, maps:get(<<"payload">>, Json))
    after
        peer:stop(Peer)
    end.

%% EMQX 5.7-5.8: get_config/1 answers {ok, Map}.
config_from_emqx_5_8(Config) ->
    config_from_emqx(Config, v5_8).

%% e5.9 and later: get_config/1 answers a bare map.
config_from_emqx_5_9(Config) ->
    config_from_emqx(Config, e5_9).

config_from_emqx(Config, Line) ->
    emqx_plugins:set_line(Line),
    Topic = topic(Config),
    emqx_plugins:set_config(list_to_binary(?NAME_VSN), publish_config(Config, Topic, #{})),
    %% The application env points elsewhere: inside EMQX, EMQX's config wins.
    application:set_env(emqx_plugin_kafka_bridge, config, #{<<"kafka">> => #{<<"bootstrap_servers">> => <<"127.0.0.1:1">>}}),
    try
        {ok, _} = application:ensure_all_started(emqx_plugin_kafka_bridge),
        publish(<<"c">>, <<"p/1">>, 1),
        ?assertEqual([1], ids(consume(?config(broker, Config), Topic, 1, 5000)))
    after
        application:unset_env(emqx_plugin_kafka_bridge, config)
    end.

%% Inside EMQX a config source that fails is an error that says so, never
%% a silent fallback to the application env.
config_source_failure_is_an_error(Config) ->
    application:set_env(emqx_plugin_kafka_bridge, config, publish_config(Config, topic(Config), #{})),
    emqx_plugins:set_config(list_to_binary(?NAME_VSN), not_a_map),
    try
        Result = application:ensure_all_started(emqx_plugin_kafka_bridge),
        ct:log("~p", [Result]),
        ?assertMatch({error, _}, Result),
        ?assertNotEqual(nomatch, string:find(io_lib:format("~p", [Result]), "emqx_plugins_get_config"))
    after
        application:unset_env(emqx_plugin_kafka_bridge, config)
    end.

config_file_from_env_var(Config) ->
    Topic = topic(Config),
    File = filename:join(?config(priv_dir, Config), "bridge.config"),
    ok = file:write_file(File, io_lib:format("~p.~n", [publish_config(Config, Topic, #{})])),
    os:putenv("EMQX_KAFKA_BRIDGE_CONFIG", File),
    {ok, _} = application:ensure_all_started(emqx_plugin_kafka_bridge),
    publish(<<"c">>, <<"p/1">>, 7),
    ?assertEqual([7], ids(consume(?config(broker, Config), Topic, 1, 5000))).

config_changes_are_validated(Config) ->
    Good = publish_config(Config, topic(Config), #{}),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Good),
    Cases = [{#{<<"format">> => <<"yaml">>}, <<"format">>},
             {#{<<"routes">> => [#{<<"filter">> => <<"#/x">>}]}, <<"routes[1].filter">>},
             {#{<<"events">> => #{<<"message_acked">> => #{<<"topic">> => <<"${nope}">>}}}, <<"events.message_acked.topic">>},
             {#{<<"kafka">> => #{<<"properties">> => #{<<"acks">> => <<"most">>}}}, <<"kafka.properties.acks">>},
             {#{<<"buffer">> => #{<<"max_bytes">> => 12}}, <<"buffer.max_bytes">>}],
    lists:foreach(fun({Change, Key}) ->
                          Result = emqx_plugin_kafka_bridge_app:on_config_changed(
                                     Good, kafka_bridge_test_lib:deep_merge(Good, Change)),
                          ct:log("~p -> ~p", [Change, Result]),
                          ?assertMatch({error, <<_/binary>>}, Result),
                          {error, Text} = Result,
                          ?assertNotEqual(nomatch, binary:match(Text, Key))
                  end, Cases),
    %% Stopped plugin: changes are still validated, and accepted when valid.
    kafka_bridge_test_lib:stop_bridge(),
    ?assertMatch({error, _}, emqx_plugin_kafka_bridge_app:on_config_changed(Good, #{})),
    ?assertEqual(ok, emqx_plugin_kafka_bridge_app:on_config_changed(#{}, Good)).

%% Events flow from several processes while routes change: every event
%% arrives, each in the topic its route named when it was published.
hot_reload_routes_loses_nothing(Config) ->
    Broker = ?config(broker, Config),
    [Default, Before, After] = [topic(Config) || _ <- [1, 2, 3]],
    Route = fun(T) -> #{<<"routes">> => [#{<<"filter">> => <<"r/#">>, <<"topic">> => T}]} end,
    Old = publish_config(Config, Default, Route(Before)),
    New = publish_config(Config, Default, Route(After)),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Old),
    %% Background traffic on the default route from four processes.
    Parent = self(),
    Workers = [spawn_link(fun() -> background(Parent, W * 100000 + 1, 0) end) || W <- lists:seq(1, 4)],
    [publish(<<"r">>, <<"r/1">>, I) || I <- lists:seq(1, 2000)],
    ok = emqx_plugin_kafka_bridge_app:on_config_changed(Old, New),
    [publish(<<"r">>, <<"r/1">>, I) || I <- lists:seq(2001, 4000)],
    [W ! stop || W <- Workers],
    Background = lists:sum([receive {done, W, N} -> N end || W <- Workers]),
    Total = 4000 + Background,
    Metrics = kafka_bridge_test_lib:wait_for_delivered(Total, 30000),
    ?assertMatch(#{failed := 0, dropped := 0}, Metrics),
    ?assertEqual(lists:seq(1, 2000), lists:sort(ids(consume(Broker, Before, 4000, 5000)))),
    ?assertEqual(lists:seq(2001, 4000), lists:sort(ids(consume(Broker, After, 4000, 5000)))),
    ?assertEqual(Background, length(lists:usort(ids(consume(Broker, Default, Background, 5000))))).

%% Publishes until told to stop, pausing 1 ms every 100 events and at most
%% 20 000 events, so the total stays small enough to read back quickly
%% however the schedulers share the two cores.
background(Parent, _I, N) when N >= 20000 ->
    receive stop -> Parent ! {done, self(), N} end;
background(Parent, I, N) ->
    receive stop -> Parent ! {done, self(), N}
    after 0 ->
            publish(<<"bg">>, <<"bg/1">>, I),
            N rem 100 =:= 99 andalso timer:sleep(1),
            background(Parent, I + 1, N + 1)
    end.

hot_reload_enables_and_disables_hooks(Config) ->
    Old = publish_config(Config, topic(Config), #{}),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Old),
    ?assertNotEqual([], emqx_hooks:lookup('client.connected')),
    ?assertEqual([], emqx_hooks:lookup('message.acked')),
    New = kafka_bridge_test_lib:deep_merge(Old, #{<<"events">> => #{<<"client_connected">> => #{<<"enable">> => false},
                                                                    <<"message_acked">> => #{<<"enable">> => true}}}),
    ok = emqx_plugin_kafka_bridge_app:on_config_changed(Old, New),
    ?assertEqual([], emqx_hooks:lookup('client.connected')),
    ?assertNotEqual([], emqx_hooks:lookup('message.acked')).

%% Switch to another broker while events flow: each event lands in one
%% of the two clusters, and all arrive.
hot_reload_broker_address(Config) ->
    BrokerA = ?config(broker, Config),
    BrokerB = kafka_bridge_broker:start(filename:join(?config(priv_dir, Config), "broker_b")),
    try
        Topic = unique(<<"moving">>),
        ok = kafka_bridge_broker:create_topic(BrokerA, Topic),
        ok = kafka_bridge_broker:create_topic(BrokerB, Topic),
        Old = publish_config(Config, Topic, #{}),
        New = kafka_bridge_test_lib:deep_merge(Old, #{<<"kafka">> => #{<<"bootstrap_servers">> => kafka_bridge_broker:bootstrap(BrokerB)}}),
        {ok, _} = kafka_bridge_test_lib:start_bridge(Old),
        [publish(<<"m">>, <<"m/1">>, I) || I <- lists:seq(1, 5000)],
        ok = emqx_plugin_kafka_bridge_app:on_config_changed(Old, New),
        [publish(<<"m">>, <<"m/1">>, I) || I <- lists:seq(5001, 10000)],
        Metrics = kafka_bridge_test_lib:wait_for_delivered(10000, 30000),
        ct:log("metrics: ~p", [Metrics]),
        ?assertMatch(#{delivered := 10000, failed := 0, dropped := 0}, Metrics),
        InA = ids(consume(BrokerA, Topic, 10000, 4000)),
        InB = ids(consume(BrokerB, Topic, 10000, 4000)),
        ct:comment("~b records in A, ~b in B", [length(InA), length(InB)]),
        ?assertEqual(lists:seq(1, 10000), lists:usort(InA ++ InB)),
        ?assert(lists:all(fun(I) -> I =< 5000 end, InA))
    after
        kafka_bridge_broker:stop(BrokerB)
    end.

%% An operator fixes a wrong broker address while events wait. The old
%% producer cannot flush to a broker that is not there and takes all of
%% buffer.flush_timeout; EMQX 6 waits 10 s for each other node's
%% on_config_changed/2 (rpc:multicall) and answers 500 after that, although
%% the update applies. So the update answers at once and the old producer
%% hands its records to the new one in the background: every event reaches
%% Kafka. A stop during that retirement keeps to flush_timeout and counts
%% every event: delivered or dropped_on_stop.
config_fix_while_kafka_is_down_answers_at_once(Config) ->
    Broker = ?config(broker, Config),
    Name = list_to_binary(?NAME_VSN),
    Nowhere = iolist_to_binary(["127.0.0.1:", integer_to_list(kafka_bridge_test_lib:free_port())]),
    %% Starts on the wrong address, waits until librdkafka holds 100
    %% events, then PUTs the right one: answered 204, well inside 10 s.
    StartWrongThenFix = fun(Topic, FlushMs) ->
        Good = publish_config(Config, Topic, #{<<"buffer">> => #{<<"flush_timeout">> => FlushMs}}),
        Wrong = kafka_bridge_test_lib:deep_merge(Good, #{<<"kafka">> => #{<<"bootstrap_servers">> => Nowhere}}),
        {ok, _} = kafka_bridge_test_lib:start_bridge(Wrong),
        [publish(<<"c">>, <<"fix/1">>, I) || I <- lists:seq(1, 100)],
        ok = kafka_bridge_test_lib:wait_until(fun() -> metric(inflight) =:= 100 end, 5000),
        {Micros, Answer} = timer:tc(emqx_mgmt_api_plugins, put_plugin_config, [Name, Good]),
        ct:log("the config PUT answered ~p after ~b ms", [Answer, Micros div 1000]),
        ?assertEqual({204}, Answer),
        ?assert(Micros < 5000000)
    end,
    Topic = topic(Config),
    StartWrongThenFix(Topic, 20000),
    [publish(<<"c">>, <<"fix/1">>, I) || I <- lists:seq(101, 200)],
    %% The old producer's 100 (and any it took before it saw the change)
    %% came back through the queue.
    #{delivered := 200, failed := 0, dropped := 0, requeued := Requeued} =
        kafka_bridge_test_lib:wait_for_delivered(200, 40000),
    ?assert(Requeued >= 100),
    ?assertEqual(lists:seq(1, 200), lists:usort(ids(consume(Broker, Topic, 200, 4000)))),
    kafka_bridge_test_lib:stop_bridge(),
    %% Stopped while the old producer still waits.
    StopTopic = topic(Config),
    StartWrongThenFix(StopTopic, 3000),
    {StopMicros, ok} = timer:tc(fun kafka_bridge_test_lib:stop_bridge/0),
    M = emqx_plugin_kafka_bridge:metrics(),
    ct:log("stop took ~b ms; ~p", [StopMicros div 1000, M]),
    ?assert(StopMicros < 5000000),
    #{received := 100, delivered := Delivered, failed := 0, dropped := Dropped, dropped_on_stop := Dropped} = M,
    ?assertEqual(100, Delivered + Dropped),
    ?assertEqual(Delivered, length(lists:usort(ids(consume(Broker, StopTopic, Delivered, 3000))))),
    ?assertEqual(0, kafka_bridge_test_lib:producer_threads()).

health_check_states(Config) ->
    ?assertMatch({error, <<_/binary>>}, emqx_plugin_kafka_bridge_app:on_health_check(#{})),
    Topic = topic(Config),
    {ok, _} = kafka_bridge_test_lib:start_bridge(publish_config(Config, Topic, #{})),
    ok = kafka_bridge_test_lib:wait_until(fun() -> emqx_plugin_kafka_bridge_app:on_health_check(#{}) =:= ok end, 10000),
    kafka_bridge_test_lib:stop_bridge(),
    %% A broker that does not exist: unhealthy, and the reason says why.
    Nowhere = iolist_to_binary(["127.0.0.1:", integer_to_list(kafka_bridge_test_lib:free_port())]),
    {ok, _} = kafka_bridge_test_lib:start_bridge(#{<<"kafka">> => #{<<"bootstrap_servers">> => Nowhere},
                                                   <<"buffer">> => #{<<"max_messages">> => 20, <<"flush_timeout">> => 0}}),
    {error, Down} = emqx_plugin_kafka_bridge_app:on_health_check(#{}),
    ct:log("~s", [Down]),
    ?assertNotEqual(nomatch, binary:match(Down, <<"Kafka">>)),
    kafka_bridge_test_lib:stop_bridge(),
    %% Connected, but the buffer over 90 %: unhealthy. A topic nobody can
    %% deliver to fills it (librdkafka waits for the topic to appear).
    {ok, _} = kafka_bridge_test_lib:start_bridge(publish_config(Config, unique(<<"absent">>),
                                                                #{<<"buffer">> => #{<<"max_messages">> => 20,
                                                                                    <<"flush_timeout">> => 0}})),
    ok = kafka_bridge_test_lib:wait_until(fun() -> emqx_plugin_kafka_bridge_app:on_health_check(#{}) =:= ok end, 10000),
    [publish(<<"h">>, <<"h/1">>, I) || I <- lists:seq(1, 19)],
    {error, Full} = emqx_plugin_kafka_bridge_app:on_health_check(#{}),
    ct:log("~s", [Full]),
    ?assertNotEqual(nomatch, binary:match(Full, <<"90%">>)).

ctl(Args) ->
    emqx_ctl:exit_status(["kafka_bridge" | Args]).

%% `emqx ctl kafka_bridge ...' exits 0 when the command returns ok.
ctl_commands(Config) ->
    Topic = topic(Config),
    Good = publish_config(Config, Topic, #{}),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Good),
    {0, Running} = ctl(["status"]),
    ?assertMatch({match, _}, re:run(Running, "running +: true")),
    publish(<<"c">>, <<"ctl/1">>, 1),
    kafka_bridge_test_lib:wait_for_delivered(1, 5000),
    {0, Status} = ctl(["status"]),
    ?assertMatch({match, _}, re:run(Status, "state +: connected")),
    ?assertMatch({match, _}, re:run(Status, "config_error +: none")),
    {0, Metrics} = ctl(["metrics"]),
    ct:log("~s", [Metrics]),
    ?assertMatch({match, _}, re:run(Metrics, "(^|\n)delivered +: 1\n")),
    %% Names longer than 20 characters are printed whole.
    ?assertMatch({match, _}, re:run(Metrics, "\nspool_corrupt_records +: 0\n")),
    ?assertMatch({match, _}, re:run(Metrics, "\ndropped_spool_error +: 0\n")),
    %% reload re-reads the config EMQX holds and applies it live.
    Other = topic(Config),
    kafka_bridge_test_lib:set_plugin_config(publish_config(Config, Other, #{})),
    ?assertEqual({0, <<"reloaded\n">>}, ctl(["reload"])),
    publish(<<"c">>, <<"ctl/1">>, 2),
    ?assertEqual([2], ids(consume(?config(broker, Config), Other, 1, 5000))),
    kafka_bridge_test_lib:set_plugin_config(#{<<"format">> => <<"csv">>}),
    {1, Failed} = ctl(["reload"]),
    ?assertMatch({match, _}, re:run(Failed, "reload failed: .*bootstrap_servers")),
    {1, Usage} = ctl(["nonsense"]),
    ?assertMatch({match, _}, re:run(Usage, "kafka_bridge status")),
    %% emqx ctl's own help asks every command for its usage.
    ok = emqx_plugin_kafka_bridge_cli:cmd(usage).

%% The ctl command exists only while the bridge runs: registered after a
%% successful start, never after a failed one, gone after stop.
ctl_registered_only_while_running(Config) ->
    ?assertEqual({error, cmd_not_found}, emqx_ctl:lookup_command(kafka_bridge)),
    kafka_bridge_test_lib:set_plugin_config(#{<<"format">> => <<"csv">>}),
    ?assertMatch({error, _}, application:ensure_all_started(emqx_plugin_kafka_bridge)),
    ?assertEqual({error, cmd_not_found}, emqx_ctl:lookup_command(kafka_bridge)),
    {ok, _} = kafka_bridge_test_lib:start_bridge(publish_config(Config, topic(Config), #{})),
    ?assertMatch({ok, _}, emqx_ctl:lookup_command(kafka_bridge)),
    kafka_bridge_test_lib:stop_bridge(),
    ?assertEqual({error, cmd_not_found}, emqx_ctl:lookup_command(kafka_bridge)).

%% EMQX 6.0.3+ routes /api/v5/plugin_api/emqx_plugin_kafka_bridge/... to
%% on_handle_api_call/4 with the method and the path's segments.
plugin_api_calls(Config) ->
    Topic = topic(Config),
    {ok, _} = kafka_bridge_test_lib:start_bridge(publish_config(Config, Topic, #{})),
    publish(<<"c">>, <<"api/1">>, 1),
    kafka_bridge_test_lib:wait_for_delivered(1, 5000),
    Api = fun(Method, Path) -> emqx_plugin_kafka_bridge_app:on_handle_api_call(Method, Path, #{}, #{}) end,
    {ok, 200, #{<<"content-type">> := <<"application/json">>}, Status} = Api(get, [<<"status">>]),
    ?assertMatch(#{<<"state">> := <<"connected">>, <<"running">> := true, <<"config_error">> := <<"none">>}, Status),
    {ok, 200, #{<<"content-type">> := <<"application/json">>}, Metrics} = Api(get, [<<"metrics">>]),
    ?assertMatch(#{<<"delivered">> := 1, <<"delivery_latency_ms">> := #{<<"p50">> := _},
                   <<"topics">> := #{Topic := #{<<"delivered">> := 1}}}, Metrics),
    {ok, 200, #{<<"content-type">> := <<"text/plain", _/binary>>}, Text} = Api(get, [<<"metrics">>, <<"prometheus">>]),
    ?assertMatch({match, _}, re:run(Text, "\nemqx_kafka_bridge_delivered_total 1\n")),
    ?assertMatch({error, 405, _, _}, Api(post, [<<"status">>])),
    ?assertEqual({error, not_found}, Api(get, [<<"nope">>])).

%% EMQX 5.7-5.8 store a config the plugin cannot apply; the last good one
%% keeps running and the error shows in the log, status, health and ctl
%% until a valid one comes. e5.9+ honours the refusal.
unappliable_config_keeps_last_good(Config) ->
    Broker = ?config(broker, Config),
    Name = list_to_binary(?NAME_VSN),
    Topic = topic(Config),
    Good = publish_config(Config, Topic, #{}),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Good),
    kafka_bridge_test_lib:capture_logs(),
    Bads = [{kafka_bridge_test_lib:deep_merge(Good, #{<<"routes">> => [#{<<"filter">> => <<"#/x">>, <<"topic">> => Topic}]}),
             <<"routes[1].filter">>},
            {kafka_bridge_test_lib:deep_merge(Good, #{<<"kafka">> => #{<<"bootstrap_servers">> => <<>>}}),
             <<"kafka.bootstrap_servers">>}],
    lists:foldl(
      fun({Bad, Key}, I) ->
              ok = emqx_plugins:put_config(Name, Bad, undefined),
              ?assertEqual({ok, Bad}, emqx_plugins:get_config(Name)),
              publish(<<"c">>, <<"p/1">>, I),
              ?assertEqual([I], ids(consume(Broker, Topic, I, 5000)) -- lists:seq(1, I - 1)),
              #{config_error := Error} = emqx_plugin_kafka_bridge:status(),
              ?assertNotEqual(nomatch, binary:match(Error, Key)),
              {error, Health} = emqx_plugin_kafka_bridge_app:on_health_check(#{}),
              ?assertNotEqual(nomatch, binary:match(Health, Key)),
              {0, CtlStatus} = ctl(["status"]),
              ?assertMatch({match, _}, re:run(CtlStatus, <<"config_error +: .*\\Q", Key/binary, "\\E">>)),
              Logs = kafka_bridge_test_lib:captured_logs(),
              ?assert(lists:any(fun(L) -> binary:match(L, Key) =/= nomatch end, Logs)),
              I + 1
      end, 1, Bads),
    ok = emqx_plugins:put_config(Name, Good, undefined),
    ?assertMatch(#{config_error := none}, emqx_plugin_kafka_bridge:status()),
    ok = kafka_bridge_test_lib:wait_until(fun() -> emqx_plugin_kafka_bridge_app:on_health_check(#{}) =:= ok end, 10000),
    %% e5.9+ (6.x): the refusal is EMQX's answer (HTTP 400 with its text)
    %% and nothing is stored, so nothing is out of step: no config_error,
    %% health stays ok.
    emqx_plugins:set_line(e5_9),
    try
        ?assertNot(erlang:function_exported(emqx_plugins, put_config, 3)),
        {Bad, Key} = hd(Bads),
        {error, Refusal} = emqx_plugins:update_config(Name, Bad),
        ?assertNotEqual(nomatch, binary:match(Refusal, Key)),
        ?assertEqual(Good, emqx_plugins:get_config(Name)),
        ?assertMatch(#{config_error := none}, emqx_plugin_kafka_bridge:status()),
        ?assertEqual(ok, emqx_plugin_kafka_bridge_app:on_health_check(#{})),
        publish(<<"c">>, <<"p/1">>, 3),
        ?assertEqual([3], ids(consume(Broker, Topic, 3, 5000)) -- [1, 2])
    after
        emqx_plugins:set_line(v5_8)
    end.

%% Every buffer.* key applies live, across modes, and no accepted event is
%% lost on the way.
buffer_changes_apply_live(Config) ->
    Broker = ?config(broker, Config),
    Name = list_to_binary(?NAME_VSN),
    Topic = topic(Config),
    Dir = list_to_binary(filename:join(?config(priv_dir, Config), binary_to_list(unique(<<"spool">>)))),
    Memory = publish_config(Config, Topic, #{}),
    Steps = [#{<<"buffer">> => #{<<"max_messages">> => 50000, <<"overflow">> => <<"drop_oldest">>}},
             #{<<"buffer">> => #{<<"mode">> => <<"disk">>, <<"dir">> => Dir}},
             #{<<"buffer">> => #{<<"mode">> => <<"hybrid">>, <<"max_bytes">> => 64 * 1024 * 1024}},
             #{<<"buffer">> => #{<<"mode">> => <<"memory">>, <<"max_messages">> => 20000}}],
    {ok, _} = kafka_bridge_test_lib:start_bridge(Memory),
    {Published, _} =
        lists:foldl(
          fun(Change, {N, Previous}) ->
                  kafka_bridge_test_lib:publish_range(N + 1, N + 1000, <<"b/1">>),
                  Next = kafka_bridge_test_lib:deep_merge(Previous, Change),
                  ok = emqx_plugins:put_config(Name, Next, undefined),
                  ?assertMatch(#{config_error := none}, emqx_plugin_kafka_bridge:status()),
                  {N + 1000, Next}
          end, {0, Memory}, Steps),
    kafka_bridge_test_lib:publish_range(Published + 1, Published + 1000, <<"b/1">>),
    Total = Published + 1000,
    ?assertMatch(#{max_messages := 20000}, emqx_plugin_kafka_bridge:status()),
    Metrics = kafka_bridge_test_lib:wait_for_delivered(Total, 30000),
    ct:log("metrics: ~p", [Metrics]),
    ?assertMatch(#{dropped := 0, failed := 0}, Metrics),
    ?assertEqual(lists:seq(1, Total), lists:usort(ids(consume(Broker, Topic, Total, 5000)))).

%% EMQX's start (and a hot patch) purge and reload every beam, the NIF
%% module included, while an older instance may hold the library: the
%% library's upgrade callback must accept it, and a running bridge stays
%% reachable from the new code.
nif_reload_keeps_the_running_bridge(Config) ->
    Topic = topic(Config),
    {ok, _} = kafka_bridge_test_lib:start_bridge(publish_config(Config, Topic, #{})),
    [begin
         _ = code:purge(emqx_plugin_kafka_bridge_nif),
         ?assertEqual({module, emqx_plugin_kafka_bridge_nif}, code:load_file(emqx_plugin_kafka_bridge_nif)),
         publish(<<"c">>, <<"reload/1">>, I)
     end || I <- lists:seq(1, 3)],
    ?assertEqual([1, 2, 3], lists:sort(ids(consume(?config(broker, Config), Topic, 3, 5000)))),
    ?assertMatch(#{running := true, state := connected}, emqx_plugin_kafka_bridge:status()),
    ?assertEqual(1, kafka_bridge_test_lib:producer_threads(1)),
    ok = kafka_bridge_test_lib:stop_bridge(),
    ?assertEqual(0, kafka_bridge_test_lib:producer_threads()),
    ?assertMatch(#{running := false}, emqx_plugin_kafka_bridge:status()).
