%% @doc Application callbacks, including the ones EMQX calls on plugin
%% config updates (5.7+), health checks (6.x) and plugin API calls (6.0.3+).
-module(emqx_plugin_kafka_bridge_app).

-behaviour(application).

-include("emqx_plugin_kafka_bridge.hrl").

-export([start/2, stop/1, on_config_changed/2, on_health_check/1, on_handle_api_call/4]).

-define(APP, emqx_plugin_kafka_bridge).

-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_Type, _Args) ->
    case start_bridge() of
        {ok, Pid} ->
            %% Registered only once running: the command needs a bridge.
            emqx_plugin_kafka_bridge_cli:register(),
            {ok, Pid};
        {error, Reason} ->
            %% Also drops a registration a crashed earlier instance left.
            emqx_plugin_kafka_bridge_cli:unregister(),
            ?LOG(error, #{msg => cannot_start, reason => reason_text(Reason)}),
            {error, Reason}
    end.

start_bridge() ->
    case emqx_plugin_kafka_bridge_config:read() of
        {ok, Config} ->
            case validate(Config) of
                ok ->
                    application:set_env(?APP, active_config, emqx_plugin_kafka_bridge_config:wrap(Config)),
                    application:unset_env(?APP, config_error),
                    start_sup();
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

start_sup() ->
    case emqx_plugin_kafka_bridge_sup:start_link() of
        {ok, Pid} -> {ok, Pid};
        {error, {shutdown, {failed_to_start_child, _, Reason}}} -> {error, Reason};
        {error, Reason} -> {error, Reason}
    end.

%% The supervisor tree is already down here: the server removed the hooks,
%% flushed the queue and joined the producer in its terminate/2.
-spec stop(term()) -> ok.
stop(_State) ->
    emqx_plugin_kafka_bridge_cli:unregister(),
    ok.

%% @doc EMQX calls this on every node for each config update. EMQX 5.7-5.8
%% store the update whatever this returns: a config that cannot be applied
%% keeps the last good one running and is reported (log, status, health,
%% ctl) until a valid one arrives. From e5.9 on (6.x too) an error rejects
%% the update, EMQX answers it (HTTP 400 with its text) and keeps the
%% running config: nothing is out of step, and nothing is flagged.
-spec on_config_changed(map(), map()) -> ok | {error, binary()}.
on_config_changed(_OldConfig, NewConfig) ->
    Result = case validate(NewConfig) of
                 ok ->
                     case emqx_plugin_kafka_bridge_server:running() of
                         true -> reply(emqx_plugin_kafka_bridge_server:reconfigure(NewConfig));
                         false -> ok
                     end;
                 Error ->
                     reply(Error)
             end,
    note_config_result(Result),
    Result.

note_config_result(ok) ->
    application:unset_env(?APP, config_error);
note_config_result({error, Text}) ->
    case {emqx_rejects_refused_updates(), emqx_plugin_kafka_bridge_server:running()} of
        {true, _} ->
            ok;
        {false, true} ->
            ?LOG(error, #{msg => config_update_not_applied, reason => Text,
                          detail => "the last good config keeps running"}),
            application:set_env(?APP, config_error, Text);
        {false, false} ->
            ?LOG(error, #{msg => config_update_invalid, reason => Text})
    end.

%% Known by what EMQX's emqx_plugins exports, not by a version string:
%% update_config/2 (e5.9.0 on) calls this callback before storing and
%% honours a refusal; 5.7-5.8 have put_config/3, which stores anyway.
emqx_rejects_refused_updates() ->
    _ = code:ensure_loaded(emqx_plugins),
    erlang:function_exported(emqx_plugins, update_config, 2).

%% @doc ok when running the last config given, connected to Kafka, with the
%% buffer under 90 % of its budget.
-spec on_health_check(map()) -> ok | {error, binary()}.
on_health_check(_Options) ->
    case emqx_plugin_kafka_bridge_server:running() of
        false ->
            {error, <<"the Kafka bridge is not running">>};
        true ->
            health(emqx_plugin_kafka_bridge:status())
    end.

health(#{config_error := Error}) when is_binary(Error) ->
    {error, <<"config update not applied (the last good config is running): ", Error/binary>>};
%% A token sign-in that failed: librdkafka keeps the last token until it
%% expires, so the bridge may still be connected; the operator is told now.
health(#{sign_in_error := Error}) when Error =/= <<>> ->
    {error, Error};
%% buffered and queue_bytes count what the budget counts: the queue and,
%% in memory mode, what librdkafka holds.
health(#{state := connected, buffered := Len, max_messages := MaxLen,
         queue_bytes := Bytes, max_bytes := MaxBytes})
  when Len * 10 < MaxLen * 9, Bytes * 10 < MaxBytes * 9 ->
    ok;
health(#{state := connected, buffered := Len, queue_bytes := Bytes}) ->
    {error, iolist_to_binary(io_lib:format("buffer above 90% of its budget (~b records, ~b bytes)",
                                           [Len, Bytes]))};
health(#{state := State, last_error := Error}) ->
    {error, iolist_to_binary(io_lib:format("Kafka ~s: ~ts", [State, Error]))};
health(Status) ->
    {error, iolist_to_binary(io_lib:format("unexpected status ~p", [Status]))}.

%% @doc EMQX 6.0.3+ routes /api/v5/plugin_api/emqx_plugin_kafka_bridge/...
%% here: GET status, GET metrics (JSON) and GET metrics/prometheus (text).
-spec on_handle_api_call(atom(), [binary()], map(), map()) -> {ok, integer(), map(), term()} | {error, integer(), map(), term()}.
on_handle_api_call(Method, Path, Request, Context) ->
    emqx_plugin_kafka_bridge_api:handle(Method, Path, Request, Context).

validate(Config) ->
    try emqx_plugin_kafka_bridge_nif:validate(Config)
    catch
        error:{nif_not_loaded, _} = Reason -> {error, Reason}
    end.

reply(ok) -> ok;
reply({error, Reason}) -> {error, reason_text(Reason)}.

reason_text(Reason) when is_binary(Reason) -> Reason;
reason_text(Reason) -> iolist_to_binary(io_lib:format("~0p", [Reason])).
