%% @doc Application callbacks, including the ones EMQX 5.7+ calls on plugin
%% config updates and health checks.
-module(emqx_plugin_kafka_bridge_app).

-behaviour(application).

-export([start/2, stop/1, on_config_changed/2, on_health_check/1]).

-define(APP, emqx_plugin_kafka_bridge).

start(_Type, _Args) ->
    maybe_register_cli(),
    case emqx_plugin_kafka_bridge_config:read() of
        {ok, Config} ->
            case validate(Config) of
                ok ->
                    application:set_env(?APP, active_config, Config),
                    start_sup();
                {error, Reason} ->
                    {error, Reason}
            end;
        {error, Reason} ->
            {error, Reason}
    end.

start_sup() ->
    case emqx_plugin_kafka_bridge_sup:start_link() of
        {ok, Pid} -> {ok, Pid};
        {error, {shutdown, {failed_to_start_child, _, Reason}}} -> {error, Reason};
        {error, Reason} -> {error, Reason}
    end.

%% The supervisor tree is already down here: the server removed the hooks,
%% flushed the queue and joined the producer in its terminate/2.
stop(_State) ->
    maybe_unregister_cli(),
    ok.

%% @doc EMQX calls this on every node for each config update, even when the
%% plugin is stopped. An error rejects the update.
on_config_changed(_OldConfig, NewConfig) ->
    case validate(NewConfig) of
        ok ->
            case emqx_plugin_kafka_bridge_server:running() of
                true -> reply(emqx_plugin_kafka_bridge_server:reconfigure(NewConfig));
                false -> ok
            end;
        Error ->
            reply(Error)
    end.

%% @doc ok when connected to Kafka with the buffer under 90 % of its budget.
on_health_check(_Options) ->
    case emqx_plugin_kafka_bridge_server:running() of
        false ->
            {error, <<"the Kafka bridge is not running">>};
        true ->
            health(emqx_plugin_kafka_bridge:status())
    end.

health(#{state := connected, queue_len := Len, max_messages := MaxLen,
         queue_bytes := Bytes, max_bytes := MaxBytes})
  when Len * 10 < MaxLen * 9, Bytes * 10 < MaxBytes * 9 ->
    ok;
health(#{state := connected, queue_len := Len, queue_bytes := Bytes}) ->
    {error, iolist_to_binary(io_lib:format("buffer above 90% of its budget (~b records, ~b bytes)",
                                           [Len, Bytes]))};
health(#{state := State, last_error := Error}) ->
    {error, iolist_to_binary(io_lib:format("Kafka ~s: ~ts", [State, Error]))};
health(Status) ->
    {error, iolist_to_binary(io_lib:format("unexpected status ~p", [Status]))}.

validate(Config) ->
    try emqx_plugin_kafka_bridge_nif:validate(Config)
    catch
        error:{nif_not_loaded, _} = Reason -> {error, Reason}
    end.

reply(ok) -> ok;
reply({error, Reason}) when is_binary(Reason) -> {error, Reason};
reply({error, Reason}) -> {error, iolist_to_binary(io_lib:format("~p", [Reason]))}.

maybe_register_cli() ->
    case emqx_ctl_available() of
        true -> emqx_ctl:register_command(kafka_bridge, {emqx_plugin_kafka_bridge_cli, cmd}, []);
        false -> ok
    end.

maybe_unregister_cli() ->
    case emqx_ctl_available() of
        true -> emqx_ctl:unregister_command(kafka_bridge);
        false -> ok
    end.

emqx_ctl_available() ->
    code:ensure_loaded(emqx_ctl) =:= {module, emqx_ctl}
        andalso erlang:function_exported(emqx_ctl, register_command, 3).
