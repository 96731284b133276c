%% @doc The bridge's hook callbacks and its public API.
%%
%% Every callback hands the hook's raw arguments to the NIF, which routes,
%% encodes and queues the event without waiting on Kafka, then returns what
%% EMQX expects unchanged. A bridge never stops a hook chain and never
%% raises: an exception here would cost a log line per message.
-module(emqx_plugin_kafka_bridge).

-export([hook/2, unhook/1]).
-export([metrics/0, status/0, metrics_text/0, bridge/0]).
-export([on_client_connected/3, on_client_disconnected/4,
         on_session_subscribed/4, on_session_unsubscribed/4,
         on_message_publish/2, on_message_delivered/3,
         on_message_acked/3, on_message_dropped/4]).

%% emqx_hooks.hrl's HP_BRIDGE: after auth and the rule engine.
-define(HP_BRIDGE, 870).
-define(BRIDGE_KEY, {?MODULE, bridge}).
-define(UNREACHED_KEY, {?MODULE, dropped_nif_unavailable}).

%% The NIF's resource handle of a running bridge.
-type bridge() :: reference().
-type hook_point() :: atom().
-export_type([bridge/0]).

%%--------------------------------------------------------------------
%% Hook registration
%%--------------------------------------------------------------------

callback('client.connected') -> on_client_connected;
callback('client.disconnected') -> on_client_disconnected;
callback('session.subscribed') -> on_session_subscribed;
callback('session.unsubscribed') -> on_session_unsubscribed;
callback('message.publish') -> on_message_publish;
callback('message.delivered') -> on_message_delivered;
callback('message.acked') -> on_message_acked;
callback('message.dropped') -> on_message_dropped.

%% @doc Registers the callbacks for `HookPoints', with the bridge handle as
%% ExtraArgs, and makes `Bridge' the one metrics/0 and status/0 report on.
-spec hook([hook_point()], bridge()) -> ok.
hook(HookPoints, Bridge) ->
    Unreached = unreached_counter(),
    case bridge() of
        Bridge -> ok;
        %% A new bridge counts from zero, as the NIF's counters do.
        _ -> counters:put(Unreached, 1, 0)
    end,
    set_bridge(Bridge),
    lists:foreach(
        fun(HookPoint) ->
            Action = {?MODULE, callback(HookPoint), [Bridge]},
            case emqx_hooks:add(HookPoint, Action, ?HP_BRIDGE) of
                ok -> ok;
                {error, already_exists} -> emqx_hooks:put(HookPoint, Action, ?HP_BRIDGE)
            end
        end,
        HookPoints).

-spec unhook([hook_point()]) -> ok.
unhook(HookPoints) ->
    lists:foreach(fun(HookPoint) -> emqx_hooks:del(HookPoint, {?MODULE, callback(HookPoint)}) end,
                  HookPoints).

%%--------------------------------------------------------------------
%% Callbacks
%%--------------------------------------------------------------------

-spec on_client_connected(map(), map(), bridge()) -> ok.
on_client_connected(ClientInfo, ConnInfo, Bridge) ->
    _ = emit(Bridge, 'client.connected', ClientInfo, ConnInfo, undefined),
    ok.

-spec on_client_disconnected(map(), term(), map(), bridge()) -> ok.
on_client_disconnected(ClientInfo, Reason, ConnInfo, Bridge) ->
    _ = emit(Bridge, 'client.disconnected', ClientInfo, Reason, ConnInfo),
    ok.

-spec on_session_subscribed(map(), binary(), map(), bridge()) -> ok.
on_session_subscribed(ClientInfo, Topic, SubOpts, Bridge) ->
    _ = emit(Bridge, 'session.subscribed', ClientInfo, Topic, SubOpts),
    ok.

-spec on_session_unsubscribed(map(), binary(), map(), bridge()) -> ok.
on_session_unsubscribed(ClientInfo, Topic, SubOpts, Bridge) ->
    _ = emit(Bridge, 'session.unsubscribed', ClientInfo, Topic, SubOpts),
    ok.

%% Message is EMQX's #message{} record; any term is passed on unchanged.
-spec on_message_publish(Message, bridge()) -> {ok, Message} when Message :: term().
on_message_publish(Message, Bridge) ->
    _ = emit(Bridge, 'message.publish', Message, undefined, undefined),
    {ok, Message}.

-spec on_message_delivered(map(), Message, bridge()) -> {ok, Message} when Message :: term().
on_message_delivered(ClientInfo, Message, Bridge) ->
    _ = emit(Bridge, 'message.delivered', ClientInfo, Message, undefined),
    {ok, Message}.

-spec on_message_acked(map(), term(), bridge()) -> ok.
on_message_acked(ClientInfo, Message, Bridge) ->
    _ = emit(Bridge, 'message.acked', ClientInfo, Message, undefined),
    ok.

-spec on_message_dropped(term(), term(), term(), bridge()) -> ok.
on_message_dropped(Message, Info, Reason, Bridge) ->
    _ = emit(Bridge, 'message.dropped', Message, Info, Reason),
    ok.

%% Large payloads come back as `dirty' and are encoded on a dirty scheduler.
%% A call that cannot reach the NIF (its library is not loaded, or the
%% handle belongs to another loaded copy of it) is counted here, since the
%% NIF's own counters never see it.
emit(Bridge, HookPoint, A1, A2, A3) ->
    try emqx_plugin_kafka_bridge_nif:emit(Bridge, HookPoint, A1, A2, A3) of
        dirty -> emqx_plugin_kafka_bridge_nif:emit_dirty(Bridge, HookPoint, A1, A2, A3);
        {error, not_a_bridge} = Error -> count_unreached(), Error;
        Result -> Result
    catch
        _:Reason -> count_unreached(), {error, Reason}
    end.

count_unreached() ->
    counters:add(unreached_counter(), 1, 1).

%% Made once per VM and kept across restarts: a persistent_term update
%% costs a scan of every process, so it is not done per call.
unreached_counter() ->
    case persistent_term:get(?UNREACHED_KEY, undefined) of
        undefined ->
            Ref = counters:new(1, [write_concurrency]),
            persistent_term:put(?UNREACHED_KEY, Ref),
            Ref;
        Ref ->
            Ref
    end.

%%--------------------------------------------------------------------
%% API
%%--------------------------------------------------------------------

%% @doc The handle of the running (or last stopped) bridge, or undefined.
-spec bridge() -> bridge() | undefined.
bridge() ->
    persistent_term:get(?BRIDGE_KEY, undefined).

%% Written once per bridge start, never per call (a persistent_term update
%% costs a scan of every process).
set_bridge(Bridge) ->
    persistent_term:put(?BRIDGE_KEY, Bridge).

%% @doc Counters of the current bridge (of the last one after a stop):
%% received, filtered_out, enqueued, dropped, dropped_queue_full,
%% dropped_on_stop, dropped_invalid, delivered, failed, retried, requeued,
%% queue_len, queue_bytes, inflight, delivery_latency_ms => #{p50, p99},
%% topics => #{KafkaTopic => #{delivered, failed}} (at most 100 topics),
%% other_topics => #{delivered, failed} (the sums for the rest), and
%% dropped_nif_unavailable: hook calls that never reached the NIF (part of
%% `dropped', not of `received'). `#{}' before any start.
-spec metrics() -> map().
metrics() ->
    Unreached = case persistent_term:get(?UNREACHED_KEY, undefined) of
                    undefined -> 0;
                    Ref -> counters:get(Ref, 1)
                end,
    case nif_call(metrics) of
        Metrics = #{dropped := Dropped} ->
            Metrics#{dropped := Dropped + Unreached, dropped_nif_unavailable => Unreached};
        _ when Unreached > 0 ->
            #{dropped => Unreached, dropped_nif_unavailable => Unreached};
        _ ->
            #{}
    end.

%% @doc `#{state => connected | connecting | disconnected | failed | stopped, running,
%% last_error, config_error, ...}'. `config_error' is `none', or why the last
%% config update was not applied (the last good config keeps running).
-spec status() -> map().
status() ->
    Status = case nif_call(status) of
                 Map when is_map(Map) -> Map;
                 _ -> #{state => stopped, running => false}
             end,
    Status#{config_error => application:get_env(emqx_plugin_kafka_bridge, config_error, none)}.

%% A handle from another build of the library (a version installed over
%% this one) is not a bridge to this one: the NIF answers {error, _}.
nif_call(Function) ->
    case bridge() of
        undefined -> undefined;
        Bridge ->
            try emqx_plugin_kafka_bridge_nif:Function(Bridge)
            catch error:Reason -> {error, Reason}
            end
    end.

%% @doc The metrics in Prometheus text exposition format.
-spec metrics_text() -> binary().
metrics_text() ->
    emqx_plugin_kafka_bridge_prometheus:render(metrics(), status()).
