%% @doc Owns the running bridge: starts it, registers its hooks, applies
%% config changes, relays the NIF's log lines to logger, and on stop removes
%% the hooks before flushing and joining the producer.
-module(emqx_plugin_kafka_bridge_server).

-behaviour(gen_server).

-include("emqx_plugin_kafka_bridge.hrl").

-export([start_link/0, reconfigure/1, running/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2, format_status/1]).

-define(APP, emqx_plugin_kafka_bridge).

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

-spec running() -> boolean().
running() ->
    whereis(?MODULE) =/= undefined.

%% @doc Applies a new configuration to the running bridge. The config
%% travels wrapped, so that no crash report of either process shows it.
-spec reconfigure(map()) -> ok | {error, term()}.
reconfigure(Config) ->
    gen_server:call(?MODULE, {reconfigure, emqx_plugin_kafka_bridge_config:wrap(Config)}, infinity).

-spec init([]) -> {ok, map()} | {stop, term()}.
init([]) ->
    %% terminate/2 must run on shutdown: it flushes the queue to Kafka.
    process_flag(trap_exit, true),
    {ok, Active} = application:get_env(?APP, active_config),
    Config = emqx_plugin_kafka_bridge_config:with_spool_dir(emqx_plugin_kafka_bridge_config:unwrap(Active)),
    case emqx_plugin_kafka_bridge_nif:start(Config, node(), self()) of
        {ok, Bridge, HookPoints} ->
            emqx_plugin_kafka_bridge:hook(HookPoints, Bridge),
            ?LOG(info, #{msg => started, hooks => HookPoints}),
            {ok, #{bridge => Bridge, hooks => HookPoints}};
        {error, Reason} ->
            {stop, Reason}
    end.

-spec handle_call(term(), gen_server:from(), map()) -> {reply, term(), map()}.
handle_call({reconfigure, Wrapped}, _From, State = #{bridge := Bridge, hooks := Old}) ->
    Resolved = emqx_plugin_kafka_bridge_config:with_spool_dir(emqx_plugin_kafka_bridge_config:unwrap(Wrapped)),
    case emqx_plugin_kafka_bridge_nif:reconfigure(Bridge, Resolved) of
        {ok, New} ->
            %% Add the new hooks first, so no event in between is missed.
            emqx_plugin_kafka_bridge:hook(New -- Old, Bridge),
            emqx_plugin_kafka_bridge:unhook(Old -- New),
            application:set_env(?APP, active_config, Wrapped),
            {reply, ok, State#{hooks := New}};
        {error, Reason} ->
            {reply, {error, Reason}, State}
    end;
handle_call(_Request, _From, State) ->
    {reply, {error, unknown_call}, State}.

-spec handle_cast(term(), map()) -> {noreply, map()}.
handle_cast(_Msg, State) ->
    {noreply, State}.

-spec handle_info(term(), map()) -> {noreply, map()} | {stop, term(), map()}.
%% A line from the NIF's threads: `Msg' names what happened (a fixed set).
handle_info({emqx_plugin_kafka_bridge_log, Level, Msg, Reason, Suppressed}, State) ->
    Report = #{msg => binary_to_atom(Msg), reason => Reason},
    ?LOG(Level, case Suppressed of
                    0 -> Report;
                    _ -> Report#{suppressed_since_last => Suppressed}
                end),
    {noreply, State};
%% The producer thread failed (the NIF has logged why): stop, so that the
%% supervisor starts the bridge again; terminate/2 counts what was lost.
handle_info({emqx_plugin_kafka_bridge_failed, Text}, State) ->
    {stop, {producer_failed, Text}, State};
handle_info(_Info, State) ->
    {noreply, State}.

%% The state holds no config and messages carry it wrapped; still, a crash
%% report or sys:get_status/1 shows neither a message nor a config term.
-spec format_status(gen_server:format_status()) -> gen_server:format_status().
format_status(Status) ->
    maps:map(fun(message, _) -> redacted;
                (_, Value) -> Value
             end, Status).

-spec terminate(term(), map()) -> ok.
terminate(_Reason, #{bridge := Bridge, hooks := HookPoints}) ->
    emqx_plugin_kafka_bridge:unhook(HookPoints),
    case emqx_plugin_kafka_bridge_nif:stop(Bridge) of
        {ok, 0} ->
            case emqx_plugin_kafka_bridge_nif:metrics(Bridge) of
                %% The spool's files may still hold settled records: only its
                %% backlog is undelivered.
                #{spool_backlog_bytes := Bytes} when Bytes > 0 ->
                    ?LOG(info, #{msg => stopped, spool_backlog_bytes => Bytes,
                                 detail => "undelivered events are kept in the spool and sent after the next start"});
                _ ->
                    ?LOG(info, #{msg => stopped, detail => "every event delivered"})
            end;
        {ok, Dropped} ->
            ?LOG(warning, #{msg => stopped_with_events_undelivered, dropped_on_stop => Dropped,
                            detail => iolist_to_binary(io_lib:format("~b events undelivered after buffer.flush_timeout",
                                                                     [Dropped]))});
        {error, Reason} ->
            ?LOG(error, #{msg => stop_failed, reason => Reason})
    end.
