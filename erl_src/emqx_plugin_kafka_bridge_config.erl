%% @doc Where the configuration comes from.
%%
%% 1. The file named by $EMQX_KAFKA_BRIDGE_CONFIG, if set (HOCON when EMQX's
%%    hocon app is present, else an Erlang term file holding one map): for
%%    EMQX before 5.7, where plugins read their own file.
%% 2. Inside EMQX 5.7+ (emqx_plugins loaded), the plugin config EMQX holds.
%%    A failure there is an error that says what failed, never a fallback.
%% 3. Outside EMQX (benchmarks, embedding), the application env `config'.
%% All three give a map with binary keys, as config.hocon has them.
-module(emqx_plugin_kafka_bridge_config).

-export([read/0, with_spool_dir/1, wrap/1, unwrap/1]).

-define(APP, emqx_plugin_kafka_bridge).
-define(ENV_VAR, "EMQX_KAFKA_BRIDGE_CONFIG").

-spec read() -> {ok, map()} | {error, term()}.
read() ->
    case os:getenv(?ENV_VAR) of
        Path when is_list(Path), Path =/= "" -> read_file(Path);
        _ -> from_emqx_or_env()
    end.

%% @doc A config inside a closure, as EMQX's emqx_secret keeps secrets: what
%% is kept in the application env or sent between processes then prints as
%% a fun in crash reports, sys:get_status/1 and application:get_all_env/1.
-spec wrap(map()) -> fun(() -> map()).
wrap(Config) -> fun() -> Config end.

-spec unwrap(fun(() -> map())) -> map().
unwrap(Wrapped) when is_function(Wrapped, 0) -> Wrapped().

%% @doc An empty or missing buffer.dir means EMQX's data dir + kafka_bridge
%% (data/kafka_bridge in a default install); outside EMQX the NIF uses
%% data/kafka_bridge under the working directory.
-spec with_spool_dir(map()) -> map().
with_spool_dir(Config) ->
    Buffer = maps:get(<<"buffer">>, Config, #{}),
    case is_map(Buffer) andalso maps:get(<<"dir">>, Buffer, <<>>) of
        Dir when Dir =:= <<>>; Dir =:= "" ->
            case emqx_data_dir() of
                undefined -> Config;
                DataDir ->
                    SpoolDir = unicode:characters_to_binary(filename:join(DataDir, "kafka_bridge")),
                    Config#{<<"buffer">> => Buffer#{<<"dir">> => SpoolDir}}
            end;
        _ ->
            Config
    end.

emqx_data_dir() ->
    case code:ensure_loaded(emqx) =:= {module, emqx} andalso erlang:function_exported(emqx, data_dir, 0) of
        true -> try emqx:data_dir() catch _:_ -> undefined end;
        false -> undefined
    end.

-spec name_vsn() -> binary().
name_vsn() ->
    {ok, Vsn} = application:get_key(?APP, vsn),
    iolist_to_binary([atom_to_list(?APP), "-", Vsn]).

from_emqx_or_env() ->
    case code:ensure_loaded(emqx_plugins) of
        {module, emqx_plugins} -> from_emqx();
        _ -> from_env()
    end.

%% get_config(NameVsn, config_format_map, Default) is {ok, Map} in every
%% line that has it (5.7 on); get_config/1 is {ok, Map} in 5.7-5.8 but a bare
%% map from e5.9 on, so it is only the fallback, taking both shapes.
from_emqx() ->
    NameVsn = name_vsn(),
    try
        case erlang:function_exported(emqx_plugins, get_config, 3) of
            true -> emqx_plugins:get_config(NameVsn, config_format_map, #{});
            false -> emqx_plugins:get_config(NameVsn)
        end
    of
        {ok, Map} when is_map(Map) -> {ok, Map};
        Map when is_map(Map) -> {ok, Map};
        Other -> {error, {emqx_plugins_get_config, NameVsn, {unexpected_return, Other}}}
    catch
        Class:Reason -> {error, {emqx_plugins_get_config, NameVsn, {Class, Reason}}}
    end.

from_env() ->
    case application:get_env(?APP, config) of
        {ok, Map} when is_map(Map) -> {ok, Map};
        {ok, Other} -> {error, {config, {not_a_map, Other}}};
        undefined -> {ok, #{}}
    end.

read_file(Path) ->
    case filename:extension(Path) of
        Ext when Ext =:= ".hocon"; Ext =:= ".conf" -> read_hocon(Path);
        _ -> read_terms(Path)
    end.

read_hocon(Path) ->
    case code:ensure_loaded(hocon) of
        {module, hocon} ->
            case hocon:load(Path) of
                {ok, Map} -> {ok, Map};
                {error, Reason} -> {error, {config_file, Path, Reason}}
            end;
        _ ->
            {error, {config_file, Path, <<"HOCON files need EMQX's hocon app; use an Erlang term file">>}}
    end.

read_terms(Path) ->
    case file:consult(Path) of
        {ok, [Map]} when is_map(Map) -> {ok, Map};
        {ok, _} -> {error, {config_file, Path, <<"expected exactly one map">>}};
        {error, Reason} -> {error, {config_file, Path, Reason}}
    end.
