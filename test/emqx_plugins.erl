%% @doc Test-only stand-in for EMQX's emqx_plugins. It follows EMQX 5.8.9
%% (apps/emqx_plugins/src/emqx_plugins.erl) as ../shared/emqx-plugin-api.md
%% records it, rough edges included, so that a suite fails wherever the
%% plugin would fail in EMQX:
%%
%% - get_config/1 is {ok, Map} (5.7-5.8); after set_line(e5_9) it is a bare
%%   map, as from e5.9.0 on. get_config/3 with config_format_map is
%%   {ok, Map} in both lines.
%% - The exports follow the line, as a plugin that asks with
%%   erlang:function_exported/3 finds them: 5.8.9 exports put_config/3 and
%%   no update_config/2; e5.9.0 and 6.2.2 the reverse. set_line/1 reloads
%%   this module compiled for the line.
%% - put_config/3 (5.7-5.8) writes the config file first, then calls
%%   NAME_app:on_config_changed/2 and ignores what it returns or raises,
%%   then stores the map. update_config/2 (e5.9+) calls on_config_changed/2
%%   first, only while the plugin's app is loaded or running, and stores
%%   nothing unless it returns ok.
%% - ensure_started/1 purges and reloads every beam of each app of the
%%   package (also when still loaded from an earlier start), loads the app
%%   and runs application:ensure_all_started/1 with a 10 s limit; an app
%%   already running at the same version is left alone.
%% - ensure_stopped/1 is application:stop/1, code:soft_purge/1 of each
%%   module, application:unload/1.
%% - Only enabled plugins start at boot/0 (a node start).
%% - ensure_uninstalled/1 refuses a running or enabled plugin.
%%
%% What it leaves out: Avro validation (EMQX answers 400 before put_config
%% is reached), clusters, the HTTP API. Packages live in the install dir
%% and configs and states in the data dir given to set_dirs/2, so a new VM
%% given the same dirs boots like a restarted node.
-module(emqx_plugins).

-export([get_config/1, get_config/3,
         ensure_installed/1, ensure_uninstalled/1, ensure_enabled/1, ensure_disabled/1,
         ensure_started/0, ensure_started/1, ensure_stopped/0, ensure_stopped/1, restart/1, running_status/1]).
%% Test-only controls.
-export([set_config/2, set_line/1, set_dirs/2, boot/0]).
-ifdef('E5_9').
-export([update_config/2]).
-compile({nowarn_unused_function, [{put_config, 3}]}).
-else.
-export([put_config/3]).
-compile({nowarn_unused_function, [{update_config, 2}]}).
-endif.

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

%% @doc e5.9+: the plugin may refuse; a stopped plugin's config cannot change.
update_config(NameVsn0, Config) ->
    NameVsn = bin(NameVsn0),
    case running_status(NameVsn) of
        stopped ->
            {error, {plugin_apps_not_loaded, NameVsn}};
        _ ->
            {ok, OldConf} = get_config(NameVsn, config_format_map, #{}),
            AppModule = app_module(NameVsn),
            try AppModule:on_config_changed(OldConf, Config) of
                ok ->
                    ok = write_config_file(NameVsn, Config),
                    set_config(NameVsn, Config);
                {error, _} = Error -> Error;
                Other -> {error, {bad_callback_return_value, Other}}
            catch
                _:Reason -> {error, Reason}
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
                ok -> install_default_config(NameVsn);
                {error, Reason} -> {error, #{msg => "failed_to_extract_plugin_package", reason => Reason}}
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
    case {running_status(NameVsn), is_enabled(NameVsn)} of
        {Status, _} when Status =/= stopped ->
            {error, #{msg => "bad_plugin_running_status", hint => "stop_the_plugin_first"}};
        {_, true} ->
            {error, #{msg => "bad_plugin_config_status", hint => "disable_the_plugin_first"}};
        _ ->
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
        LibDir = filename:join(lib_dir(), str(NameVsn)),
        lists:foreach(fun(AppVsn) -> load_app(LibDir, AppVsn) end, rel_apps(NameVsn)),
        lists:foreach(fun start_app/1, [App || {App, _} <- rel_apps(NameVsn)])
    catch
        throw:ReasonMap -> {error, ReasonMap}
    end.

load_app(LibDir, {App, Vsn}) ->
    case lists:keyfind(App, 1, application:which_applications()) of
        {App, _, RunningVsn} when RunningVsn =:= Vsn -> ok;
        {App, _, _OtherVsn} -> ok;   % EMQX logs plugin_app_already_running
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
        ok -> unload(App);
        {error, {not_started, App}} -> unload(App);
        {error, Reason} -> throw(#{msg => "failed_to_stop_app", app => App, reason => Reason})
    end.

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

%% @doc running | loaded | stopped, from the package's first app.
running_status(NameVsn) ->
    App = list_to_atom(plugin_name(NameVsn)),
    case {lists:keymember(App, 1, application:which_applications()),
          lists:keymember(App, 1, application:loaded_applications())} of
        {true, _} -> running;
        {false, true} -> loaded;
        {false, false} -> stopped
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
