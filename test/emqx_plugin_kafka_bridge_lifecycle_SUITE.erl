%% @doc The packaged plugin driven the way an EMQX operator drives it, in a
%% fresh VM whose code path holds only OTP and the EMQX stand-ins of test/:
%% install, configure, enable, start, stop/start 20 times, restart, a node
%% restart, a config the plugin cannot apply, a fixed config, a new version
%% installed over the running one, uninstall.
%%
%% It runs twice, once per line of EMQX's emqx_plugins stand-in (see
%% test/emqx_plugins.erl and ../shared/emqx-plugin-api.md):
%% - v5_8 (5.7-5.8): starts purge and reload every beam, stops soft-purge
%%   and unload, config updates are stored whatever the plugin answers;
%% - e5_9 (e5.9 on, 6.x): install loads the app and the NIF, a stop leaves
%%   them loaded and the next start runs the same code, the plugin's
%%   refusal of an update is EMQX's answer, and a second version cannot
%%   start while the first runs.
%% In both, only enabled plugins start at boot and ctl exits 0 only on
%% `ok'. The cases run in order on one node; after each step events
%% published through the hooks reach Kafka (checked by id), each hook is
%% registered once, and the VM's thread count does not grow.
-module(emqx_plugin_kafka_bridge_lifecycle_SUITE).

-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(kafka_bridge_test_lib, [consume/4, ids/1, unique/1, deep_merge/2]).

-define(NAME, "emqx_plugin_kafka_bridge").
-define(V1, <<"emqx_plugin_kafka_bridge-0.1.0">>).
-define(V2, <<"emqx_plugin_kafka_bridge-0.1.1">>).
-define(HOOKS, ['client.connected', 'client.disconnected', 'session.subscribed',
                'session.unsubscribed', 'message.publish']).

all() ->
    [{group, v5_8}, {group, e5_9}].

groups() ->
    Steps = fun(Line) ->
                    [install_loads_the_default_config, configure_enable_start]
                        ++ [health_and_plugin_api || Line =:= e5_9]
                        ++ [stop_start_twenty_times, restart, node_restart_starts_only_enabled,
                            start_with_kafka_unreachable, unappliable_config, fixed_config,
                            new_version_over_the_old, uninstall]
            end,
    [{Line, [sequence], Steps(Line)} || Line <- [v5_8, e5_9]].

init_per_suite(Config) ->
    Priv = ?config(priv_dir, Config),
    Broker = kafka_bridge_broker:start(filename:join(Priv, "broker")),
    [{broker, Broker} | Config].

end_per_suite(Config) ->
    kafka_bridge_broker:stop(?config(broker, Config)).

%% Each line has its own install and data dirs (a node of its own) and its
%% own topic, so that ids of one line cannot stand in for the other's.
init_per_group(Line, Config0) ->
    Dir = filename:join(?config(priv_dir, Config0), Line),
    Topic = unique(<<"lifecycle">>),
    ok = kafka_bridge_broker:create_topic(?config(broker, Config0), Topic),
    InstallDir = filename:join(Dir, "plugins"),
    DataDir = filename:join(Dir, "data"),
    ok = filelib:ensure_dir(filename:join(InstallDir, "x")),
    ok = filelib:ensure_dir(filename:join(DataDir, "x")),
    {ok, _} = file:copy(tarball(), filename:join(InstallDir, binary_to_list(?V1) ++ ".tar.gz")),
    ok = next_version_tarball(InstallDir),
    Config = [{line, Line}, {topic, Topic}, {dirs, {InstallDir, DataDir}} | Config0],
    Node = start_node(Config),
    persistent_term:put({?MODULE, node}, Node),
    persistent_term:put({?MODULE, next_id}, 1),
    Config.

end_per_group(_Line, _Config) ->
    catch peer:stop(plugin_node()),
    ok.

tarball() ->
    filename:join([kafka_bridge_test_lib:project_root(), "_build", "plugins", ?NAME "-0.1.0.tar.gz"]).

%% The same package as 0.1.1: what an operator installs over 0.1.0.
next_version_tarball(InstallDir) ->
    Work = filename:join(InstallDir, "repack"),
    ok = erl_tar:extract(tarball(), [{cwd, Work}, compressed]),
    Old = filename:join(Work, binary_to_list(?V1)),
    New = filename:join(Work, binary_to_list(?V2)),
    ok = file:rename(Old, New),
    ok = file:rename(filename:join(New, binary_to_list(?V1)), filename:join(New, binary_to_list(?V2))),
    Replace = fun(File, From, To) ->
                      {ok, Bin} = file:read_file(File),
                      ok = file:write_file(File, binary:replace(Bin, From, To, [global]))
              end,
    Replace(filename:join(New, "release.json"), <<"0.1.0">>, <<"0.1.1">>),
    Replace(filename:join([New, binary_to_list(?V2), "ebin", ?NAME ".app"]), <<"\"0.1.0\"">>, <<"\"0.1.1\"">>),
    ok = erl_tar:create(filename:join(InstallDir, binary_to_list(?V2) ++ ".tar.gz"),
                        [{binary_to_list(?V2), New}], [compressed]),
    file:del_dir_r(Work).

%%--------------------------------------------------------------------
%% The node
%%--------------------------------------------------------------------

%% A VM with OTP and the stand-ins (of the group's line) only; the plugin
%% comes from the package.
start_node(Config) ->
    {InstallDir, DataDir} = ?config(dirs, Config),
    Node = kafka_bridge_test_lib:plugin_node(InstallDir, DataDir),
    ok = peer:call(Node, emqx_plugins, set_line, [?config(line, Config)]),
    Node.

plugin_node() -> persistent_term:get({?MODULE, node}).

call(M, F, A) -> peer:call(plugin_node(), M, F, A, 60000).

%% A config update as EMQX's REST API makes it on this node: {204}, or
%% from e5.9 on {400, #{code => 'BAD_CONFIG', message => Refusal}}.
put_config(NameVsn, PluginConfig) ->
    call(emqx_mgmt_api_plugins, put_plugin_config, [NameVsn, PluginConfig]).

%% What a node shutdown does: EMQX stops the enabled plugins, then halts.
restart_node(Config) ->
    ok = call(emqx_plugins, ensure_stopped, []),
    peer:stop(plugin_node()),
    Node = start_node(Config),
    persistent_term:put({?MODULE, node}, Node),
    ok = call(emqx_plugins, boot, []).

%%--------------------------------------------------------------------
%% Checks after each step
%%--------------------------------------------------------------------

operator_config(Config) ->
    kafka_bridge_test_lib:config(?config(broker, Config),
                                 #{<<"events">> => #{<<"message_publish">> => #{<<"topic">> => ?config(topic, Config)}},
                                   <<"buffer">> => #{<<"flush_timeout">> => 5000}}).

%% Publishes 50 new ids through the node's hooks; all must reach Kafka.
traffic_arrives(Config) ->
    From = persistent_term:get({?MODULE, next_id}),
    To = From + 49,
    persistent_term:put({?MODULE, next_id}, To + 1),
    ok = call(kafka_bridge_test_lib, publish_range, [From, To, <<"life/1">>]),
    Ids = lists:usort(ids(consume(?config(broker, Config), ?config(topic, Config), To, 3000))),
    ?assertEqual([], lists:seq(1, To) -- Ids).

hooks_registered_once() ->
    [?assertMatch({H, [_]}, {H, call(emqx_hooks, lookup, [H])}) || H <- ?HOOKS],
    ok.

no_hooks() ->
    [?assertEqual({H, []}, {H, call(emqx_hooks, lookup, [H])}) || H <- ?HOOKS],
    ok.

running_version() ->
    case lists:keyfind(emqx_plugin_kafka_bridge, 1, call(application, which_applications, [])) of
        {_, _, Vsn} -> Vsn;
        false -> not_running
    end.

threads() -> call(kafka_bridge_test_lib, thread_count, []).

ctl(Args) -> call(emqx_ctl, exit_status, [["kafka_bridge" | Args]]).

producer_threads() -> call(kafka_bridge_test_lib, producer_threads, []).
producer_threads(N) -> call(kafka_bridge_test_lib, producer_threads, [N]).

running_and_bridging(Config) ->
    ?assertEqual(running, call(emqx_plugins, running_status, [?V1])),
    hooks_registered_once(),
    ?assertEqual(1, producer_threads(1)),
    ?assertMatch({0, _}, ctl(["status"])),
    traffic_arrives(Config).

%%--------------------------------------------------------------------
%% Steps
%%--------------------------------------------------------------------

install_loads_the_default_config(Config) ->
    ok = call(emqx_plugins, ensure_installed, [?V1]),
    {ok, Defaults} = call(emqx_plugins, get_config, [?V1, config_format_map, #{}]),
    ?assertMatch(#{<<"kafka">> := #{<<"bootstrap_servers">> := <<"127.0.0.1:9092">>}}, Defaults),
    case ?config(line, Config) of
        v5_8 ->
            %% Nothing is loaded before a start.
            ?assertEqual(stopped, call(emqx_plugins, running_status, [?V1])),
            ?assertEqual(false, call(code, is_loaded, [emqx_plugin_kafka_bridge_nif]));
        e5_9 ->
            %% Loaded, the NIF too, and nothing running.
            ?assertEqual(loaded, call(emqx_plugins, running_status, [?V1])),
            ?assertMatch({file, _}, call(code, is_loaded, [emqx_plugin_kafka_bridge_nif])),
            ?assertEqual(0, producer_threads()),
            no_hooks()
    end.

configure_enable_start(Config) ->
    {204} = put_config(?V1, operator_config(Config)),
    ok = call(emqx_plugins, ensure_enabled, [?V1]),
    ok = call(emqx_plugins, ensure_started, [?V1]),
    running_and_bridging(Config),
    {0, Status} = ctl(["status"]),
    ?assertMatch({match, _}, re:run(Status, "state +: connected")).

%% e5.9+ only (5.8.9 calls neither): the health EMQX shows (describe and
%% the REST list; not `plugins list'), from on_health_check/1, and
%% /api/v5/plugin_api/emqx_plugin_kafka_bridge/... as EMQX routes it.
health_and_plugin_api(Config) ->
    Healthy = fun() -> {ok, #{health_status := H}} = call(emqx_plugins, describe, [?V1]), H end,
    ?assertEqual(#{status => ok, message => <<"">>}, Healthy()),
    [Listed] = call(emqx_plugins, list, []),
    ?assertNot(maps:is_key(health_status, Listed)),
    ?assertMatch([#{health_status := #{status := ok}}], call(emqx_plugins, list, [normal, #{health_check => true}])),
    Api = fun(Plugin, Method, Path) ->
                  Request = #{method => Method, path => Path,
                              request => #{method => Method, query_string => #{}, headers => #{}, body => #{}},
                              context => #{auth_meta => #{}, namespace => undefined}},
                  call(emqx_plugins, handle_api_call, [Plugin, Request, 5000])
          end,
    Json = #{<<"content-type">> => <<"application/json">>},
    ?assertMatch({200, Json, #{<<"state">> := <<"connected">>, <<"config_error">> := <<"none">>}},
                 Api(<<?NAME>>, get, [<<"status">>])),
    ?assertMatch({200, Json, #{<<"state">> := <<"connected">>}}, Api(?V1, get, [<<"status">>])),
    {200, Json, #{<<"delivered">> := Delivered}} = Api(<<?NAME>>, get, [<<"metrics">>]),
    ?assert(Delivered >= 50),
    {200, #{<<"content-type">> := <<"text/plain", _/binary>>}, Text} = Api(<<?NAME>>, get, [<<"metrics">>, <<"prometheus">>]),
    ?assertMatch({match, _}, re:run(Text, "\nemqx_kafka_bridge_delivered_total [0-9]+\n")),
    ?assertMatch({405, #{<<"allow">> := <<"GET">>}, _}, Api(<<?NAME>>, post, [<<"status">>])),
    NotFound = {404, #{code => <<"NOT_FOUND">>, message => <<"Plugin API Not Found">>}},
    ?assertEqual(NotFound, Api(<<?NAME>>, get, [<<"nope">>])),
    ?assertEqual(NotFound, Api(<<"another_plugin">>, get, [<<"status">>])),
    %% Kafka unreachable: the health says so, naming the state.
    Nowhere = iolist_to_binary(["127.0.0.1:", integer_to_list(kafka_bridge_test_lib:free_port())]),
    {204} = put_config(?V1, deep_merge(operator_config(Config),
                                       #{<<"kafka">> => #{<<"bootstrap_servers">> => Nowhere}})),
    ok = kafka_bridge_test_lib:wait_until(fun() -> maps:get(status, Healthy()) =:= error end, 20000),
    #{message := Unhealthy} = Healthy(),
    ?assertMatch({match, _}, re:run(Unhealthy, "^Kafka (connecting|disconnected)")),
    {204} = put_config(?V1, operator_config(Config)),
    ok = kafka_bridge_test_lib:wait_until(fun() -> maps:get(status, Healthy()) =:= ok end, 20000),
    %% Stopped: loaded, no health, no API.
    ok = call(emqx_plugins, ensure_stopped, [?V1]),
    {ok, Stopped} = call(emqx_plugins, describe, [?V1]),
    ?assertMatch(#{running_status := loaded}, Stopped),
    ?assertNot(maps:is_key(health_status, Stopped)),
    ?assertEqual(NotFound, Api(<<?NAME>>, get, [<<"status">>])),
    ok = call(emqx_plugins, ensure_started, [?V1]),
    running_and_bridging(Config).

stop_start_twenty_times(Config) ->
    ok = call(emqx_plugins, ensure_stopped, [?V1]),
    ok = call(emqx_plugins, ensure_started, [?V1]),
    Baseline = threads(),
    lists:foreach(fun(I) ->
                          ok = call(emqx_plugins, ensure_stopped, [?V1]),
                          no_hooks(),
                          ?assertEqual(0, producer_threads()),
                          ?assertEqual({error, cmd_not_found}, call(emqx_ctl, lookup_command, [kafka_bridge])),
                          ?assertEqual(ok, call(emqx_plugins, ensure_started, [?V1]), {cycle, I}),
                          running_and_bridging(Config)
                  end, lists:seq(1, 20)),
    ct:comment("threads: ~b after the first restart, ~b after 20 more", [Baseline, threads()]),
    ?assert(threads() =< Baseline).

restart(Config) ->
    ok = call(emqx_plugins, restart, [?V1]),
    running_and_bridging(Config).

node_restart_starts_only_enabled(Config) ->
    restart_node(Config),
    running_and_bridging(Config),
    ok = call(emqx_plugins, ensure_disabled, [?V1]),
    restart_node(Config),
    ?assertEqual(stopped, call(emqx_plugins, running_status, [?V1])),
    ok = call(emqx_plugins, ensure_enabled, [?V1]),
    ok = call(emqx_plugins, ensure_started, [?V1]),
    running_and_bridging(Config).

%% EMQX gives a start 10 s; with Kafka unreachable (and topics to create)
%% the start still returns at once and the bridge reports why it waits.
start_with_kafka_unreachable(Config) ->
    Nowhere = iolist_to_binary(["127.0.0.1:", integer_to_list(kafka_bridge_test_lib:free_port())]),
    Unreachable = deep_merge(operator_config(Config),
                             #{<<"kafka">> => #{<<"bootstrap_servers">> => Nowhere, <<"create_topics">> => true},
                               <<"buffer">> => #{<<"flush_timeout">> => 0}}),
    ok = call(emqx_plugins, ensure_stopped, [?V1]),
    {204} = put_config(?V1, Unreachable),
    ok = call(emqx_plugins, ensure_started, [?V1]),
    hooks_registered_once(),
    ?assertNotMatch(#{state := connected}, call(emqx_plugin_kafka_bridge, status, [])),
    ok = call(emqx_plugins, ensure_stopped, [?V1]),
    {204} = put_config(?V1, operator_config(Config)),
    ok = call(emqx_plugins, ensure_started, [?V1]),
    running_and_bridging(Config).

%% 5.8 stores it; the running bridge keeps the last good config and says so.
%% The next start reads the stored one and fails, naming the key.
%% e5.9+ answer the plugin's refusal (naming the key) and store nothing:
%% the bridge stays healthy, and a stop/start runs the good config.
unappliable_config(Config) ->
    Bad = deep_merge(operator_config(Config), #{<<"routes">> => [#{<<"filter">> => <<"a/#/b">>}]}),
    case ?config(line, Config) of
        v5_8 ->
            {204} = put_config(?V1, Bad),
            running_and_bridging(Config),
            #{config_error := Error} = call(emqx_plugin_kafka_bridge, status, []),
            ?assertNotEqual(nomatch, binary:match(Error, <<"routes[1].filter">>)),
            {error, Health} = call(emqx_plugin_kafka_bridge_app, on_health_check, [#{}]),
            ?assertNotEqual(nomatch, binary:match(Health, <<"routes[1].filter">>)),
            ok = call(emqx_plugins, ensure_stopped, [?V1]),
            {error, #{reason := Reason}} = call(emqx_plugins, ensure_started, [?V1]),
            ?assertNotEqual(nomatch, string:find(io_lib:format("~p", [Reason]), "routes[1].filter")),
            no_hooks(),
            ?assertEqual({error, cmd_not_found}, call(emqx_ctl, lookup_command, [kafka_bridge]));
        e5_9 ->
            {400, #{code := 'BAD_CONFIG', message := Refusal}} = put_config(?V1, Bad),
            ?assertNotEqual(nomatch, binary:match(Refusal, <<"routes[1].filter">>)),
            ?assertMatch(#{config_error := none}, call(emqx_plugin_kafka_bridge, status, [])),
            ?assertMatch({ok, #{health_status := #{status := ok}}}, call(emqx_plugins, describe, [?V1])),
            ok = call(emqx_plugins, ensure_stopped, [?V1]),
            ok = call(emqx_plugins, ensure_started, [?V1]),
            running_and_bridging(Config)
    end.

fixed_config(Config) ->
    {204} = put_config(?V1, operator_config(Config)),
    ok = call(emqx_plugins, ensure_started, [?V1]),
    running_and_bridging(Config),
    ?assertMatch(#{config_error := none}, call(emqx_plugin_kafka_bridge, status, [])).

%% 5.8 leaves a running app of another version alone, e5.9+ refuse to start
%% it; once the old one is stopped, the new one starts from its own package
%% and library.
new_version_over_the_old(Config) ->
    ok = call(emqx_plugins, ensure_installed, [?V2]),
    case ?config(line, Config) of
        v5_8 -> ok = call(emqx_plugins, ensure_started, [?V2]);
        e5_9 -> ?assertMatch({error, #{msg := "conflicting_plugin_version_running"}},
                             call(emqx_plugins, ensure_started, [?V2]))
    end,
    ?assertEqual("0.1.0", running_version()),
    ok = call(emqx_plugins, ensure_stopped, [?V1]),
    ok = call(emqx_plugins, ensure_disabled, [?V1]),
    ok = call(emqx_plugins, ensure_enabled, [?V2]),
    ok = call(emqx_plugins, ensure_started, [?V2]),
    ?assertEqual("0.1.1", running_version()),
    hooks_registered_once(),
    Nif = call(code, which, [emqx_plugin_kafka_bridge_nif]),
    ?assertNotEqual(nomatch, string:find(Nif, binary_to_list(?V2) ++ "/")),
    ?assertMatch({0, _}, ctl(["status"])),
    traffic_arrives(Config),
    restart_node(Config),
    ?assertEqual("0.1.1", running_version()),
    traffic_arrives(Config).

uninstall(Config) ->
    ?assertMatch({error, #{hint := "stop_the_plugin_first"}}, call(emqx_plugins, ensure_uninstalled, [?V2])),
    ok = call(emqx_plugins, ensure_stopped, [?V2]),
    ?assertMatch({error, #{hint := "disable_the_plugin_first"}}, call(emqx_plugins, ensure_uninstalled, [?V2])),
    ok = call(emqx_plugins, ensure_disabled, [?V2]),
    ok = call(emqx_plugins, ensure_uninstalled, [?V2]),
    ok = call(emqx_plugins, ensure_uninstalled, [?V1]),
    no_hooks(),
    {InstallDir, _} = ?config(dirs, Config),
    ?assertNot(filelib:is_dir(filename:join(InstallDir, binary_to_list(?V1)))),
    ?assertNot(filelib:is_dir(filename:join(InstallDir, binary_to_list(?V2)))).
