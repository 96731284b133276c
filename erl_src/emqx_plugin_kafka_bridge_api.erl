%% @doc The plugin's HTTP API, which EMQX 6.0.3+ serves under
%% /api/v5/plugin_api/emqx_plugin_kafka_bridge/ through the app module's
%% on_handle_api_call/4: GET status and GET metrics answer JSON (EMQX
%% encodes the map), GET metrics/prometheus answers the text exposition.
-module(emqx_plugin_kafka_bridge_api).

-export([handle/4]).

-define(JSON, #{<<"content-type">> => <<"application/json">>}).
-define(PROMETHEUS, #{<<"content-type">> => <<"text/plain; version=0.0.4; charset=utf-8">>}).

-spec handle(atom(), [binary()], map(), map()) ->
    {ok, 200, map(), map() | binary()} | {error, 405, map(), map()} | {error, not_found}.
handle(get, [<<"status">>], _Request, _Context) ->
    {ok, 200, ?JSON, json_safe(emqx_plugin_kafka_bridge:status())};
handle(get, [<<"metrics">>], _Request, _Context) ->
    {ok, 200, ?JSON, json_safe(emqx_plugin_kafka_bridge:metrics())};
handle(get, [<<"metrics">>, <<"prometheus">>], _Request, _Context) ->
    {ok, 200, ?PROMETHEUS, emqx_plugin_kafka_bridge:metrics_text()};
handle(_Method, Path, _Request, _Context)
  when Path =:= [<<"status">>]; Path =:= [<<"metrics">>]; Path =:= [<<"metrics">>, <<"prometheus">>] ->
    {error, 405, #{<<"allow">> => <<"GET">>},
     #{code => <<"METHOD_NOT_ALLOWED">>, message => <<"only GET is served here">>}};
handle(_Method, _Path, _Request, _Context) ->
    {error, not_found}.

%% Binary keys, and atoms other than true, false and null as strings, so any
%% JSON encoder EMQX uses renders the same document.
json_safe(Map) when is_map(Map) ->
    maps:fold(fun(K, V, Acc) -> Acc#{json_key(K) => json_safe(V)} end, #{}, Map);
json_safe(List) when is_list(List) ->
    [json_safe(V) || V <- List];
json_safe(Value) when is_boolean(Value); Value =:= null; is_binary(Value); is_number(Value) ->
    Value;
json_safe(Value) when is_atom(Value) ->
    atom_to_binary(Value);
json_safe(Value) ->
    iolist_to_binary(io_lib:format("~0p", [Value])).

json_key(Key) when is_atom(Key) -> atom_to_binary(Key);
json_key(Key) when is_binary(Key) -> Key;
json_key(Key) -> iolist_to_binary(io_lib:format("~0p", [Key])).
