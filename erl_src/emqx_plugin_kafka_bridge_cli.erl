%% @doc `emqx ctl kafka_bridge status | metrics | reload'.
%%
%% `emqx ctl' exits 0 only when the command returns `ok', so each command
%% prints with emqx_ctl:print/2 and returns `ok'; a failed reload or a
%% usage error returns `{error, _}' after printing why.
-module(emqx_plugin_kafka_bridge_cli).

-export([register/0, unregister/0, cmd/1]).

-define(CMD, kafka_bridge).

-spec register() -> ok.
register() ->
    case emqx_ctl_available() of
        true -> emqx_ctl:register_command(?CMD, {?MODULE, cmd}, []);
        false -> ok
    end.

-spec unregister() -> ok.
unregister() ->
    case emqx_ctl_available() of
        true -> emqx_ctl:unregister_command(?CMD);
        false -> ok
    end.

emqx_ctl_available() ->
    code:ensure_loaded(emqx_ctl) =:= {module, emqx_ctl}.

-spec cmd([string()] | usage) -> ok | {error, term()}.
cmd(["status"]) ->
    print(format_map(emqx_plugin_kafka_bridge:status())),
    ok;
cmd(["metrics"]) ->
    case emqx_plugin_kafka_bridge:metrics() of
        Empty when map_size(Empty) =:= 0 -> print(<<"not running\n">>);
        Metrics -> print(format_map(Metrics))
    end,
    ok;
cmd(["reload"]) ->
    Result = case emqx_plugin_kafka_bridge_config:read() of
                 {ok, Config} -> emqx_plugin_kafka_bridge_app:on_config_changed(#{}, Config);
                 {error, _} = Error -> Error
             end,
    case Result of
        ok ->
            print(<<"reloaded\n">>),
            ok;
        {error, Reason} ->
            print(iolist_to_binary(io_lib:format("reload failed: ~ts~n", [to_text(Reason)]))),
            {error, reload_failed}
    end;
cmd(usage) ->
    %% emqx ctl's own help asks each command for its usage lines.
    print(usage()),
    ok;
cmd(_) ->
    print(usage()),
    {error, usage}.

usage() ->
    <<"kafka_bridge status    # Kafka connection state and buffer usage\n"
      "kafka_bridge metrics   # delivery counters\n"
      "kafka_bridge reload    # re-read the plugin config and apply it live\n">>.

%% One `name : value' line per key, the names padded to the longest.
format_map(Map) ->
    Rows = lists:sort([{to_text(Key), Value} || {Key, Value} <- maps:to_list(Map)]),
    Width = lists:max([0 | [string:length(Name) || {Name, _} <- Rows]]),
    iolist_to_binary([[string:pad(Name, Width), " : ", to_text(Value), "\n"] || {Name, Value} <- Rows]).

to_text(Value) when is_binary(Value) -> Value;
to_text(Value) when is_atom(Value) -> atom_to_binary(Value);
to_text(Value) when is_integer(Value) -> integer_to_binary(Value);
%% status()'s lists of what is wrong (brokers down, partitions waiting).
to_text([]) -> <<"none">>;
to_text([First | _] = Texts) when is_binary(First) -> iolist_to_binary(lists:join("; ", Texts));
to_text(Value) -> iolist_to_binary(io_lib:format("~0p", [Value])).

print(Text) ->
    case emqx_ctl_available() of
        true -> emqx_ctl:print("~ts", [Text]);
        false -> io:put_chars(Text)
    end.
