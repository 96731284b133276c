%% @doc Loads the Rust NIF (native/) and declares its functions.
%% The NIF is loaded when the module is loaded, which inside EMQX happens at
%% plugin install time. The tarball carries one .so per architecture, in
%% priv/ARCH/; the one for the running VM is loaded. A failed load is logged
%% and every call then raises {nif_not_loaded, Reason}, which the callers
%% turn into {error, _}: `plugins start` then says why (for example which
%% architecture has no .so).
-module(emqx_plugin_kafka_bridge_nif).

-include("emqx_plugin_kafka_bridge.hrl").

-export([start/3, validate/1, reconfigure/2, stop/1,
         emit/5, emit_dirty/5, metrics/1, status/1, noop/1]).
-export([library_path/3]).

-on_load(load/0).

-define(LIBRARY, "libkafka_bridge_nif").
-define(LOAD_ERROR_KEY, {?MODULE, load_error}).

load() ->
    Result = case library_path(priv_dir(), erlang:system_info(system_architecture), os:type()) of
                 {ok, Path} -> load_library(Path);
                 {error, _} = Error -> Error
             end,
    case Result of
        ok ->
            persistent_term:erase(?LOAD_ERROR_KEY),
            ok;
        {error, Reason} ->
            persistent_term:put(?LOAD_ERROR_KEY, Reason),
            ?LOG(error, #{msg => nif_load_failed, reason => Reason}),
            ok
    end.

load_library(Path) ->
    case erlang:load_nif(Path, 0) of
        ok -> ok;
        {error, Reason} -> {error, {Path, Reason}}
    end.

%% @doc The .so for a VM (its system_architecture and os:type()), without the
%% extension, as erlang:load_nif/2 takes it; or why there is none.
-spec library_path(file:filename(), string(), {atom(), atom()}) ->
          {ok, file:filename()} | {error, term()}.
library_path(PrivDir, SystemArchitecture, {unix, linux}) ->
    [Arch | _] = string:split(SystemArchitecture, "-"),
    Path = filename:join([PrivDir, Arch, ?LIBRARY]),
    case filelib:is_regular(Path ++ ".so") of
        true ->
            {ok, Path};
        false ->
            Built = lists:sort([filename:basename(filename:dirname(F))
                                || F <- filelib:wildcard(filename:join([PrivDir, "*", ?LIBRARY ++ ".so"]))]),
            {error, {no_nif_for_architecture, list_to_binary(Arch), [list_to_binary(A) || A <- Built]}}
    end;
library_path(_PrivDir, SystemArchitecture, OsType) ->
    {error, {linux_only, OsType, list_to_binary(SystemArchitecture)}}.

priv_dir() ->
    case code:priv_dir(emqx_plugin_kafka_bridge) of
        {error, bad_name} ->
            %% Loaded from a directory that is not named after the app.
            filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
        Dir ->
            Dir
    end.

-define(NOT_LOADED, erlang:nif_error({nif_not_loaded, persistent_term:get(?LOAD_ERROR_KEY, ?MODULE)})).

-spec start(map(), atom(), pid()) -> {ok, reference(), [atom()]} | {error, term()}.
start(_Config, _Node, _LogPid) -> ?NOT_LOADED.
-spec validate(map()) -> ok | {error, term()}.
validate(_Config) -> ?NOT_LOADED.
-spec reconfigure(reference(), map()) -> {ok, [atom()]} | {error, term()}.
reconfigure(_Bridge, _Config) -> ?NOT_LOADED.
-spec stop(reference()) -> {ok, non_neg_integer()} | {error, term()}.
stop(_Bridge) -> ?NOT_LOADED.
-spec emit(reference(), atom(), term(), term(), term()) -> ok | filtered | dropped | dirty | {error, term()}.
emit(_Bridge, _Hook, _A1, _A2, _A3) -> ?NOT_LOADED.
-spec emit_dirty(reference(), atom(), term(), term(), term()) -> ok | filtered | dropped | {error, term()}.
emit_dirty(_Bridge, _Hook, _A1, _A2, _A3) -> ?NOT_LOADED.
-spec metrics(reference()) -> map() | {error, term()}.
metrics(_Bridge) -> ?NOT_LOADED.
-spec status(reference()) -> map() | {error, term()}.
status(_Bridge) -> ?NOT_LOADED.
-spec noop(term()) -> ok.
noop(_Term) -> ?NOT_LOADED.
