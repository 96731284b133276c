%% @doc Loads the Rust NIF (native/) and declares its functions.
%% The NIF is loaded when the module is loaded, which inside EMQX happens at
%% plugin install time. A failed load is logged and every call then raises
%% nif_not_loaded, which the callers turn into {error, _}.
-module(emqx_plugin_kafka_bridge_nif).

-include("emqx_plugin_kafka_bridge.hrl").

-export([start/3, validate/1, reconfigure/2, stop/1,
         emit/5, emit_dirty/5, metrics/1, status/1, noop/1]).

-on_load(load/0).

load() ->
    Path = filename:join(priv_dir(), "libkafka_bridge_nif"),
    case erlang:load_nif(Path, 0) of
        ok ->
            ok;
        {error, Reason} ->
            ?LOG(error, #{msg => nif_load_failed, path => Path, reason => Reason}),
            ok
    end.

priv_dir() ->
    case code:priv_dir(emqx_plugin_kafka_bridge) of
        {error, bad_name} ->
            %% Loaded from a directory that is not named after the app.
            filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
        Dir ->
            Dir
    end.

-define(NOT_LOADED, erlang:nif_error({nif_not_loaded, ?MODULE})).

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
