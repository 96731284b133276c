%% @doc Test-only stand-in for EMQX's emqx_plugins, in two lines: v5_8
%% follows EMQX 5.8.9 (apps/emqx_plugins/src/emqx_plugins.erl) as
%% ../shared/emqx-plugin-api.md records it, e5_9 follows 6.2.2's
%% emqx_plugins and emqx_plugins_apps (the same from e5.9.0), rough edges
%% included, so that a suite fails wherever the plugin would fail in EMQX.
%% set_line/1 reloads this module compiled for the line, so the exports
%% follow it as a plugin asking erlang:function_exported/3 finds them.
%%
%% Both lines:
%% - get_config/3 with config_format_map is {ok, Map}.
%% - Only enabled plugins start at boot/0 (a node start).
%% - A start runs application:ensure_all_started/1 with a 10 s limit.
%% - ensure_uninstalled/1 refuses a running or enabled plugin.
%%
%% v5_8 (5.7.0 to 5.8.x):
%% - get_config/1 is {ok, Map}.
%% - put_config/3 writes the config file first, then calls
%%   NAME_app:on_config_changed/2 and ignores what it returns or raises,
%%   then stores the map.
%% - ensure_installed/1 only unpacks. ensure_started/1 purges and reloads
%%   every beam of each app (also when still loaded from an earlier start)
%%   and loads the app; an app already running is left alone.
%% - ensure_stopped/1 is application:stop/1, code:soft_purge/1 of each
%%   module, application:unload/1.
%%
%% e5_9 (e5.9.0 on, 6.x):
%% - get_config/1 is a bare map.
%% - update_config/2 refuses a plugin whose app is not loaded
%%   (plugin_apps_not_loaded), else calls on_config_changed/2 first and
%%   stores nothing unless it returns ok (apply_callback/3: a callback not
%%   exported counts as ok, any other return is bad_callback_return_value).
%% - ensure_installed/1 unpacks and loads the apps (and so the NIF).
%% - ensure_stopped/1 is application:stop/1 only: the app stays loaded
%%   (running_status loaded) and the next start does not reload its beams.
%% - ensure_started/1 refuses while another version of the plugin runs
%%   (conflicting_plugin_version_running), unloads a loaded one, loads the
%%   apps unless loaded (any version), then starts them.
%% - running_status/1 compares the loaded app's version with the package's.
%% - describe/1 and list/2 with health_check => true call on_health_check/1
%%   of a running plugin (health_status #{status, message}); list/0, what
%%   `emqx ctl plugins list` prints, does not.
%% - handle_api_call/3 serves /api/v5/plugin_api/NAME/...: a running
%%   plugin found by NAME-VSN or NAME, on_handle_api_call/4 in a process of
%%   its own under the timeout (503), a crash or bad answer 500, no plugin
%%   or {error, not_found} 404.
%%
%% The REST config PUT around put_config/3 and update_config/2 is
%% test/emqx_mgmt_api_plugins.erl. What it leaves out: Avro validation
%% (EMQX answers 400 before either update is reached), clusters, hidden
%% plugins. Packages live in the install dir and configs and states in the
%% data dir given to set_dirs/2, so a new VM given the same dirs boots like
%% a restarted node.
-module(emqx_plugins).

-export([get_config/1, get_config/3,
         ensure_installed/1, ensure_uninstalled/1, ensure_enabled/1, ensure_disabled/1,
         ensure_started/0, ensure_started/1, ensure_stopped/0, ensure_stopped/1, restart/1, running_status/1]).
%% Test-only controls.
-export([set_config/2, set_line/1, set_dirs/2, boot/0]).
-ifdef('E5_9').
-export([update_config/2, describe/1, describe/2, list/0, list/2, handle_api_call/3]).
-else.
-export([put_config/3]).
-endif.
%% The other line's functions.
-compile(nowarn_unused_function).

-define(CONFIG_KEY(NameVsn), {emqx_plugins_config, NameVsn}).
-define(START_TIMEOUT, 10000).

%%--------------------------------------------------------------------
%% Test controls
%%--------------------------------------------------------------------

%% @doc v5_8 (the default: 5.7.0 to 5.8.x) or e5_9 (e5.9.0 and later).
set_line(Line) when Line =:= v5_8; Line =:= e5_9 ->
    persistent_term:put({?MODULE, line}, Line),
    Source = proplists:get_value(source, ?MODULE:module_info(compile)),
    {ok, ?MODULE, Beam} = compile:file(Source, [binary, return_errors | [{d, 'E5_9'} || Line =:= e5_9]]),
    _ = code:purge(?MODULE),
    {module, ?MODULE} = code:load_binary(?MODULE, code:which(?MODULE), Beam),
    ok.

line() ->
    persistent_term:get({?MODULE, line}, v5_8).

%% @doc The config EMQX holds for NameVsn, as if read from its config
%% file at boot.
set_config(NameVsn, Config) ->
    persistent_term:put(?CONFIG_KEY(bin(NameVsn)), Config).

set_dirs(InstallDir, DataDir) ->
    persistent_term:put({?MODULE, dirs}, {InstallDir, DataDir}).

dirs() ->
    persistent_term:get({?MODULE, dirs}).

%% @doc What a node start does: load the stored configs of the installed
%% plugins, then start the enabled ones.
boot() ->
    [set_config(NameVsn, Config) || {NameVsn, _} <- states(), {ok, Config} <- [read_config_file(NameVsn)]],
    ensure_started().

%%--------------------------------------------------------------------
%% Config
%%--------------------------------------------------------------------

get_config(NameVsn) ->
    Config = persistent_term:get(?CONFIG_KEY(bin(NameVsn)), #{}),
    case line() of
        v5_8 -> {ok, Config};
        e5_9 -> Config
    end.

get_config(NameVsn, config_format_map, Default) ->
    {ok, persistent_term:get(?CONFIG_KEY(bin(NameVsn)), Default)}.

%% @doc 5.7-5.8: written first, the plugin told, its answer ignored.
put_config(NameVsn0, ConfigJsonMap, _AvroValue) ->
    NameVsn = bin(NameVsn0),
    ok = write_config_file(NameVsn, ConfigJsonMap),
    {ok, OldConf} = get_config(NameVsn, config_format_map, #{}),
    AppModule = app_module(NameVsn),
    %% Not loaded (never started): EMQX logs on_config_changed_callback_not_exported.
    case erlang:function_exported(AppModule, on_config_changed, 2) of
        true ->
            try AppModule:on_config_changed(OldConf, ConfigJsonMap) of
                _ -> ok
            catch
                Class:Reason -> logger:error("failed_to_call_on_config_changed ~p:~p", [Class, Reason])
            end;
        false ->
            ok
    end,
    set_config(NameVsn, ConfigJsonMap),
    ok.

%% @doc e5.9+: the plugin may refuse; the config of a plugin whose app is
%% not loaded cannot change.
update_config(NameVsn0, Config) ->
    NameVsn = bin(NameVsn0),
    case running_status(NameVsn) of
        stopped ->
            {error, {plugin_apps_not_loaded, NameVsn}};
        _ ->
            {ok, OldConf} = get_config(NameVsn, config_format_map, #{}),
            case apply_callback(NameVsn, on_config_changed, [OldConf, Config]) of
                ok ->
                    ok = write_config_file(NameVsn, Config),
                    set_config(NameVsn, Config);
                {error, _} = Error ->
                    Error
            end
    end.

%% emqx_plugins_apps:apply_callback/3 (e5.9+).
apply_callback(NameVsn, Function, Args) ->
    Module = app_module(NameVsn),
    case erlang:function_exported(Module, Function, length(Args)) of
        false ->
            ok;   % EMQX logs callback_not_found at info level
        true ->
            try apply(Module, Function, Args) of
                ok -> ok;
                {error, _} = Error -> Error;
                Other -> {error, {bad_callback_return_value, Other}}
            catch
                Class:Reason ->
                    logger:error("failed_to_apply_plugin_callback ~p:~p", [Class, Reason]),
                    {error, Reason}
            end
    end.

%%--------------------------------------------------------------------
%% Packages
%%--------------------------------------------------------------------

%% @doc Unpacks InstallDir/NameVsn.tar.gz; the stored config (of any
%% version) is loaded, else the shipped config.hocon becomes the config.
ensure_installed(NameVsn0) ->
    NameVsn = str(NameVsn0),
    {InstallDir, _} = dirs(),
    case filelib:is_file(filename:join([InstallDir, NameVsn, "release.json"])) of
        true ->
            ok;
        false ->
            Tarball = filename:join(InstallDir, NameVsn ++ ".tar.gz"),
            case erl_tar:extract(Tarball, [{cwd, InstallDir}, compressed]) of
                ok ->
                    install_default_config(NameVsn),
                    case line() of
                        v5_8 -> ok;
                        e5_9 -> try load_apps(NameVsn) catch throw:ReasonMap -> {error, ReasonMap} end
                    end;
                {error, Reason} ->
                    {error, #{msg => "failed_to_extract_plugin_package", reason => Reason}}
            end
    end.

install_default_config(NameVsn) ->
    case read_config_file(NameVsn) of
        {ok, Config} ->
            %% The file is per plugin name: a new version takes it over.
            set_config(NameVsn, Config);
        {error, _} ->
            Defaults = hocon_file(filename:join([app_dir(NameVsn), "priv", "config.hocon"])),
            ok = write_config_file(bin(NameVsn), Defaults),
            set_config(NameVsn, Defaults)
    end.

ensure_uninstalled(NameVsn) ->
    Refused = case line() of
                  v5_8 -> [running, loaded];
                  e5_9 -> [running]
              end,
    case {lists:member(running_status(NameVsn), Refused), is_enabled(NameVsn)} of
        {true, _} ->
            {error, #{msg => "bad_plugin_running_status", hint => "stop_the_plugin_first"}};
        {_, true} ->
            {error, #{msg => "bad_plugin_config_status", hint => "disable_the_plugin_first"}};
        _ ->
            line() =:= e5_9 andalso unload_apps(NameVsn),
            {InstallDir, DataDir} = dirs(),
            _ = file:del_dir_r(filename:join(InstallDir, str(NameVsn))),
            _ = file:del_dir_r(filename:join([DataDir, "plugins", plugin_name(NameVsn)])),
            persistent_term:erase(?CONFIG_KEY(bin(NameVsn))),
            put_states(lists:keydelete(bin(NameVsn), 1, states())),
            ok
    end.

ensure_enabled(NameVsn) -> put_state(NameVsn, true).

ensure_disabled(NameVsn) -> put_state(NameVsn, false).

is_enabled(NameVsn) ->
    proplists:get_value(bin(NameVsn), states(), false).

%%--------------------------------------------------------------------
%% Runtime
%%--------------------------------------------------------------------

%% @doc Every enabled plugin (boot).
ensure_started() ->
    [ensure_started(NameVsn) || {NameVsn, true} <- states()],
    ok.

ensure_started(NameVsn) ->
    try
        case line() of
            v5_8 -> ok;
            e5_9 -> ensure_no_other_version_active(NameVsn)
        end,
        load_apps(NameVsn),
        lists:foreach(fun start_app/1, [App || {App, _} <- rel_apps(NameVsn)])
    catch
        throw:ReasonMap -> {error, ReasonMap}
    end.

%% e5.9+: another version running refuses the start; one only loaded (stopped
%% since) is unloaded.
ensure_no_other_version_active(NameVsn) ->
    Others = [Other || Other <- installed(), plugin_name(Other) =:= plugin_name(NameVsn), Other =/= bin(NameVsn)],
    case [Other || Other <- Others, running_status(Other) =:= running] of
        [] -> lists:foreach(fun unload_apps/1, [Other || Other <- Others, running_status(Other) =:= loaded]);
        Running -> throw(#{msg => "conflicting_plugin_version_running", active_versions => Running})
    end.

load_apps(NameVsn) ->
    LibDir = filename:join(lib_dir(), str(NameVsn)),
    lists:foreach(fun(AppVsn) -> load_app(LibDir, AppVsn) end, rel_apps(NameVsn)).

%% 5.8: left alone while running (any version), else every beam reloaded.
%% e5.9+: left alone while loaded (EMQX logs plugin_app_already_loaded for
%% another version), else loaded.
load_app(LibDir, {App, Vsn}) ->
    Present = case line() of
                  v5_8 -> application:which_applications();
                  e5_9 -> application:loaded_applications()
              end,
    case lists:keymember(App, 1, Present) of
        true -> ok;
        false -> load_beams(filename:join([LibDir, atom_to_list(App) ++ "-" ++ Vsn, "ebin"]), App)
    end.

load_beams(Ebin, App) ->
    _ = code:add_patha(Ebin),
    lists:foreach(
      fun(Beam) ->
              Module = list_to_atom(filename:basename(Beam, ".beam")),
              _ = code:purge(Module),
              case code:load_file(Module) of
                  {module, _} -> ok;
                  {error, Reason} ->
                      throw(#{msg => "failed_to_load_plugin_beam", path => Beam, reason => Reason})
              end
      end,
      filelib:wildcard(filename:join(Ebin, "*.beam"))),
    case application:load(App) of
        ok -> ok;
        {error, {already_loaded, _}} -> ok;
        {error, Reason} -> throw(#{msg => "failed_to_load_plugin_app", name => App, reason => Reason})
    end.

start_app(App) ->
    Caller = self(),
    Ref = make_ref(),
    {Pid, MRef} = spawn_monitor(fun() -> Caller ! {Ref, application:ensure_all_started(App)} end),
    receive
        {Ref, {ok, _}} -> erlang:demonitor(MRef, [flush]), ok;
        {Ref, {error, Reason}} ->
            erlang:demonitor(MRef, [flush]),
            throw(#{msg => "failed_to_start_app", app => App, reason => Reason});
        {'DOWN', MRef, process, Pid, Reason} ->
            throw(#{msg => "failed_to_start_plugin_app", app => App, reason => Reason})
    after ?START_TIMEOUT ->
            exit(Pid, kill),
            throw(#{msg => "failed_to_start_plugin_app", app => App, reason => timeout})
    end.

%% @doc Every enabled plugin (node shutdown).
ensure_stopped() ->
    [ensure_stopped(NameVsn) || {NameVsn, true} <- states()],
    ok.

ensure_stopped(NameVsn) ->
    try lists:foreach(fun stop_app/1, [App || {App, _} <- rel_apps(NameVsn)])
    catch throw:ReasonMap -> {error, ReasonMap}
    end.

stop_app(App) ->
    case application:stop(App) of
        ok -> unload_after_stop(App);
        {error, {not_started, App}} -> unload_after_stop(App);
        {error, Reason} -> throw(#{msg => "failed_to_stop_app", app => App, reason => Reason})
    end.

unload_after_stop(App) ->
    case line() of
        v5_8 -> unload(App);
        e5_9 -> ok
    end.

%% e5.9+ (uninstall, or another version starting): each app loaded and not
%% running, whatever its version.
unload_apps(NameVsn) ->
    Running = application:which_applications(),
    [unload(App) || {App, _} <- rel_apps(NameVsn),
                    lists:keymember(App, 1, application:loaded_applications()),
                    not lists:keymember(App, 1, Running)],
    ok.

unload(App) ->
    case application:get_key(App, modules) of
        {ok, Modules} -> lists:foreach(fun code:soft_purge/1, Modules);
        _ -> ok
    end,
    _ = application:unload(App),
    ok.

restart(NameVsn) ->
    case ensure_stopped(NameVsn) of
        ok -> ensure_started(NameVsn);
        Error -> Error
    end.

%% @doc running | loaded | stopped, from the package's first app; e5.9+
%% counts an app of another version as stopped, or as loaded when only the
%% running one differs.
running_status(NameVsn) ->
    App = list_to_atom(plugin_name(NameVsn)),
    Vsn = case line() of
              v5_8 -> any;
              e5_9 -> plugin_vsn(NameVsn)
          end,
    Is = fun(Apps) ->
                 case lists:keyfind(App, 1, Apps) of
                     {App, _, AppVsn} -> Vsn =:= any orelse AppVsn =:= Vsn;
                     false -> false
                 end
         end,
    case {Is(application:which_applications()), Is(application:loaded_applications())} of
        {_, false} -> stopped;
        {true, true} -> running;
        {false, true} -> loaded
    end.

%%--------------------------------------------------------------------
%% Health and the plugin API (e5.9+)
%%--------------------------------------------------------------------

%% @doc What `emqx ctl plugins describe' prints.
describe(NameVsn) ->
    describe(NameVsn, #{fill_readme => true, health_check => true}).

describe(NameVsn, Options) ->
    case filelib:is_file(filename:join([lib_dir(), str(NameVsn), "release.json"])) of
        false -> {error, #{msg => "bad_info_file", reason => enoent}};
        true -> {ok, info(bin(NameVsn), Options)}
    end.

%% @doc What `emqx ctl plugins list' prints (no health).
list() ->
    list(normal, #{}).

%% @doc list(normal, #{health_check => true}) is what GET /api/v5/plugins,
%% and so the dashboard, shows.
list(normal, Options) ->
    [info(NameVsn, Options) || NameVsn <- installed()].

info(NameVsn, Options) ->
    Status = running_status(NameVsn),
    Info = #{name => list_to_binary(plugin_name(NameVsn)), rel_vsn => list_to_binary(plugin_vsn(NameVsn)),
             running_status => Status,
             config_status => case is_enabled(NameVsn) of true -> enabled; false -> disabled end},
    case {Options, Status} of
        {#{health_check := true}, running} ->
            Health = case apply_callback(NameVsn, on_health_check, [#{}]) of
                         ok -> #{status => ok, message => <<"">>};
                         {error, Reason} -> #{status => error, message => emqx_utils:readable_error_msg(Reason)}
                     end,
            Info#{health_status => Health};
        _ ->
            Info
    end.

%% @doc What EMQX answers /api/v5/plugin_api/Plugin/Path... with: {Code,
%% Body} or {Code, Headers, Body}. Request is #{method, path, request,
%% context}.
handle_api_call(Plugin, Request, Timeout) ->
    case resolve_active_name_vsn(bin(Plugin)) of
        {ok, NameVsn} ->
            try
                map_plugin_api_result(nolink_apply(fun() -> on_handle_api_call(NameVsn, Request) end, Timeout))
            catch
                exit:timeout ->
                    {503, #{code => <<"PLUGIN_API_TIMEOUT">>, message => <<"Plugin API Timeout">>}};
                _:_ ->
                    {500, #{code => <<"INTERNAL_ERROR">>, message => <<"Plugin API Callback Crash">>}}
            end;
        {error, not_found} ->
            {404, #{code => <<"NOT_FOUND">>, message => <<"Plugin API Not Found">>}}
    end.

resolve_active_name_vsn(Plugin) ->
    Active = lists:sort([NameVsn || NameVsn <- installed(), running_status(NameVsn) =:= running]),
    case lists:member(Plugin, Active) of
        true -> {ok, Plugin};
        false ->
            case [NameVsn || NameVsn <- Active, list_to_binary(plugin_name(NameVsn)) =:= Plugin] of
                [NameVsn | _] -> {ok, NameVsn};
                [] -> {error, not_found}
            end
    end.

%% emqx_plugins_apps:on_handle_api_call/2: no module or no export is
%% not_found; an exception is left to the caller.
on_handle_api_call(NameVsn, #{method := Method, path := Path, request := Request, context := Context}) ->
    Module = app_module(NameVsn),
    case erlang:function_exported(Module, on_handle_api_call, 4) of
        true -> Module:on_handle_api_call(Method, Path, Request, Context);
        false -> {error, not_found}
    end.

map_plugin_api_result({ok, Status, Headers, Body}) when is_integer(Status) ->
    {Status, normalize_headers(Headers), Body};
map_plugin_api_result({error, Code, Msg}) ->
    {400, #{code => to_bin(Code), message => to_bin(Msg)}};
map_plugin_api_result({error, Status, Headers, Body}) when is_integer(Status) ->
    {Status, normalize_headers(Headers), Body};
map_plugin_api_result({error, not_found}) ->
    {404, #{code => <<"NOT_FOUND">>, message => <<"Plugin API Not Found">>}};
map_plugin_api_result(_Other) ->
    {500, #{code => <<"INTERNAL_ERROR">>, message => <<"Invalid Plugin API Response">>}}.

normalize_headers(Headers) when is_map(Headers) -> normalize_headers(maps:to_list(Headers));
normalize_headers(Headers) when is_list(Headers) -> maps:from_list([{to_bin(K), iolist_to_binary(V)} || {K, V} <- Headers]);
normalize_headers(_) -> #{}.

to_bin(X) when is_atom(X) -> atom_to_binary(X);
to_bin(X) -> iolist_to_binary(X).

%% emqx_utils:nolink_apply/2: Fun runs in a process of its own, not linked
%% to the caller, killed at the timeout.
nolink_apply(Fun, Timeout) ->
    Caller = self(),
    Ref = make_ref(),
    {Pid, MRef} = spawn_monitor(fun() ->
                                        Result = try {normal, Fun()} catch C:E:S -> {exception, {C, E, S}} end,
                                        Caller ! {Ref, Result}
                                end),
    receive
        {Ref, {normal, Result}} -> erlang:demonitor(MRef, [flush]), Result;
        {Ref, {exception, {C, E, S}}} -> erlang:demonitor(MRef, [flush]), erlang:raise(C, E, S);
        {'DOWN', MRef, process, Pid, Reason} -> exit(Reason)
    after Timeout ->
            exit(Pid, kill),
            erlang:demonitor(MRef, [flush]),
            exit(timeout)
    end.

%%--------------------------------------------------------------------
%% Files
%%--------------------------------------------------------------------

lib_dir() ->
    {InstallDir, _} = dirs(),
    InstallDir.

app_dir(NameVsn) ->
    [{App, Vsn} | _] = rel_apps(NameVsn),
    filename:join([lib_dir(), str(NameVsn), atom_to_list(App) ++ "-" ++ Vsn]).

%% release.json's rel_apps, as [{App, Vsn}]; the unpacked apps live in
%% InstallDir/NameVsn/, which EMQX puts on the code path as its lib dir.
rel_apps(NameVsn) ->
    File = filename:join([lib_dir(), str(NameVsn), "release.json"]),
    {ok, Json} = file:read_file(File),
    {match, [List]} = re:run(Json, "\"rel_apps\"\\s*:\\s*\\[([^\\]]*)\\]", [{capture, all_but_first, binary}]),
    {match, Names} = re:run(List, "\"([^\"]+)\"", [global, {capture, all_but_first, list}]),
    [begin
         {match, [A, V]} = re:run(N, "^(.*)-([^-]+)$", [{capture, all_but_first, list}]),
         {list_to_atom(A), V}
     end || [N] <- Names].

plugin_name(NameVsn) ->
    {match, [Name]} = re:run(str(NameVsn), "^(.*)-[^-]+$", [{capture, all_but_first, list}]),
    Name.

plugin_vsn(NameVsn) ->
    {match, [Vsn]} = re:run(str(NameVsn), "^.*-([^-]+)$", [{capture, all_but_first, list}]),
    Vsn.

%% The packages unpacked in the install dir, as NAME-VSN binaries.
installed() ->
    [list_to_binary(filename:basename(filename:dirname(File)))
     || File <- filelib:wildcard(filename:join([lib_dir(), "*", "release.json"]))].

app_module(NameVsn) ->
    list_to_atom(plugin_name(NameVsn) ++ "_app").

config_file(NameVsn) ->
    {_, DataDir} = dirs(),
    filename:join([DataDir, "plugins", plugin_name(NameVsn), "config.term"]).

write_config_file(NameVsn, Config) ->
    File = config_file(NameVsn),
    ok = filelib:ensure_dir(File),
    file:write_file(File, term_to_binary(Config)).

read_config_file(NameVsn) ->
    case file:read_file(config_file(NameVsn)) of
        {ok, Bin} -> {ok, binary_to_term(Bin)};
        Error -> Error
    end.

states_file() ->
    {_, DataDir} = dirs(),
    filename:join([DataDir, "plugins", "states.term"]).

states() ->
    case file:read_file(states_file()) of
        {ok, Bin} -> binary_to_term(Bin);
        {error, enoent} -> []
    end.

put_states(States) ->
    ok = filelib:ensure_dir(states_file()),
    file:write_file(states_file(), term_to_binary(States)).

put_state(NameVsn, Enabled) ->
    put_states(lists:keystore(bin(NameVsn), 1, states(), {bin(NameVsn), Enabled})).

%% EMQX reads config.hocon with its hocon app; here kafka_tool parses it.
hocon_file(Path) ->
    Tool = kafka_bridge_test_lib:kafka_tool(),
    Out = Path ++ ".term",
    "" = os:cmd(Tool ++ " hocon-term '" ++ Path ++ "' '" ++ Out ++ "' 2>&1"),
    {ok, Bin} = file:read_file(Out),
    ok = file:delete(Out),
    binary_to_term(Bin).

bin(X) when is_binary(X) -> X;
bin(X) when is_list(X) -> list_to_binary(X).

str(X) when is_list(X) -> X;
str(X) when is_binary(X) -> binary_to_list(X).
