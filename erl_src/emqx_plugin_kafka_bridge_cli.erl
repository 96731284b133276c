%% @doc `emqx ctl kafka_bridge status | metrics | reload'.
%% Each command prints its answer and also returns it, so tests can call it
%% directly outside EMQX.
-module(emqx_plugin_kafka_bridge_cli).

-export([cmd/1]).

cmd(["status"]) ->
    print(format_map(emqx_plugin_kafka_bridge:status()));
cmd(["metrics"]) ->
    case emqx_plugin_kafka_bridge:metrics() of
        Empty when map_size(Empty) =:= 0 -> print(<<"not running\n">>);
        Metrics -> print(format_map(Metrics))
    end;
cmd(["reload"]) ->
    Result = case emqx_plugin_kafka_bridge_config:read() of
                 {ok, Config} -> emqx_plugin_kafka_bridge_app:on_config_changed(#{}, Config);
                 {error, _} = Error -> Error
             end,
    case Result of
        ok -> print(<<"reloaded\n">>);
        {error, Reason} -> print(iolist_to_binary(io_lib:format("reload failed: ~ts~n", [to_text(Reason)])))
    end;
cmd(_) ->
    print(<<"kafka_bridge status    # Kafka connection state and buffer usage\n"
            "kafka_bridge metrics   # delivery counters\n"
            "kafka_bridge reload    # re-read the plugin config and apply it live\n">>).

format_map(Map) ->
    iolist_to_binary([io_lib:format("~-20s: ~ts~n", [Key, to_text(Value)])
                      || {Key, Value} <- lists:sort(maps:to_list(Map))]).

to_text(Value) when is_binary(Value) -> Value;
to_text(Value) when is_atom(Value) -> atom_to_binary(Value);
to_text(Value) when is_integer(Value) -> integer_to_binary(Value);
to_text(Value) -> iolist_to_binary(io_lib:format("~0p", [Value])).

print(Text) ->
    case erlang:function_exported(emqx_ctl, print, 2) of
        true -> emqx_ctl:print("~ts", [Text]);
        false -> io:put_chars(Text)
    end,
    Text.
