%% @doc The record shape (issue 37): value modes and templates, header
%% templates and the record timestamp, each read back from Kafka.
-module(emqx_plugin_kafka_bridge_shape_SUITE).

-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(kafka_bridge_test_lib, [message/4, consume/4, unique/1, publish/1]).

-define(EVENTS, [<<"client_connected">>, <<"client_disconnected">>, <<"session_subscribed">>,
                 <<"session_unsubscribed">>, <<"message_publish">>, <<"message_delivered">>,
                 <<"message_acked">>, <<"message_dropped">>]).
-define(TRACEPARENT, <<"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01">>).
-define(PUBLISHED_AT, 1700000000999).
%% A 1 MB binary payload is a 1.4 MB record in base64 JSON.
-define(TOPIC_CONFIG, [{"max.message.bytes", "4194304"}]).

all() ->
    [every_placeholder_is_the_event_field, payload_bytes_in_every_value_mode, timestamp_now,
     json_payload_embedded_with_raw_encoding].

init_per_suite(Config) ->
    [{broker, kafka_bridge_broker:start(?config(priv_dir, Config))} | Config].

end_per_suite(Config) ->
    kafka_bridge_broker:stop(?config(broker, Config)).

end_per_testcase(_Case, _Config) ->
    kafka_bridge_test_lib:stop_bridge(),
    emqx_hooks:reset().

%%--------------------------------------------------------------------
%% Every placeholder
%%--------------------------------------------------------------------

%% Each event is bridged twice, as the event JSON and as a JSON template
%% naming every placeholder the event has, with each placeholder also in a
%% text header: every template field must equal the event JSON's field,
%% every header its text, and the record's Kafka timestamp the event's
%% `timestamp' (for messages, the publish time).
every_placeholder_is_the_event_field(Config) ->
    Broker = ?config(broker, Config),
    EventTopic = start_all_events(Config, fun(_) -> #{} end),
    fire_every_hook(),
    AsEvent = by_hook(consume(Broker, EventTopic, 8, 10000)),
    kafka_bridge_test_lib:stop_bridge(),
    emqx_hooks:reset(),
    ShapedTopic = start_all_events(
                    Config, fun(E) ->
                                    Fields = kafka_bridge_test_lib:placeholders(E),
                                    #{<<"value">> => kafka_bridge_test_lib:json_template(Fields),
                                      <<"headers">> => kafka_bridge_test_lib:header_templates(Fields)}
                            end),
    fire_every_hook(),
    Shaped = consume(Broker, ShapedTopic, 8, 10000),
    ?assertEqual(8, length(Shaped)),
    lists:foreach(
      fun(#{json := Json, headers := Headers, timestamp := KafkaTimestamp}) ->
              Hook = maps:get(<<"event">>, Json),
              Event = maps:get(Hook, AsEvent),
              ct:log("~s~n template: ~p~n headers: ~p~n event: ~p", [Hook, Json, Headers, Event]),
              %% Client and session events are stamped when they happen.
              Timed = [<<"timestamp">> || not is_message(Hook)],
              [?assertEqual({Hook, F, event_field(F, Event)}, {Hook, F, V}) || {F, V} <- maps:to_list(Json),
                                                                                 not lists:member(F, Timed)],
              [?assertEqual({Hook, F, as_text(maps:get(F, Json))}, {Hook, F, V}) || {F, V} <- Headers],
              ?assertEqual(lists:sort(maps:keys(Json)), lists:sort([F || {F, _} <- Headers])),
              ?assertEqual(maps:get(<<"timestamp">>, Json), KafkaTimestamp),
              [?assertEqual(?PUBLISHED_AT, KafkaTimestamp) || is_message(Hook)]
      end, Shaped),
    [{Publish, PublishHeaders}] = [{J, H} || #{json := J = #{<<"event">> := <<"message.publish">>}, headers := H} <- Shaped],
    ?assertEqual(?TRACEPARENT, maps:get(<<"pub_props.'User-Property'.traceparent">>, Publish)),
    ?assert(lists:member({<<"pub_props.'User-Property'.traceparent">>, ?TRACEPARENT}, PublishHeaders)).

is_message(<<"message.", _/binary>>) -> true;
is_message(_) -> false.

%% The event JSON's value for a placeholder name.
event_field(<<"pub_props.'User-Property'.", Name/binary>>, Event) ->
    maps:get(Name, maps:get(<<"User-Property">>, maps:get(<<"pub_props">>, Event)), null);
event_field(Name, Event) ->
    maps:get(Name, Event).

%% What a text header holds for a JSON value.
as_text(null) -> <<>>;
as_text(true) -> <<"true">>;
as_text(false) -> <<"false">>;
as_text(I) when is_integer(I) -> integer_to_binary(I);
as_text(B) when is_binary(B) -> B.

%%--------------------------------------------------------------------
%% Payload bytes
%%--------------------------------------------------------------------

%% Four routes in one run, each with its own value mode, take payloads
%% that are binary, invalid UTF-8, full of quotes and newlines, JSON, and
%% 1 MB: the payload mode and the text template carry the bytes as they
%% are; the JSON template stays JSON a parser reads, and its payload
%% decodes (per `${payload_encoding}') to the same bytes.
payload_bytes_in_every_value_mode(Config) ->
    Broker = ?config(broker, Config),
    Modes = [{<<"payload">>, <<"payload">>},
             {<<"text">>, <<"${payload}">>},
             {<<"json">>, <<"{\"p\":${payload},\"e\":${payload_encoding},\"c\":\"id=${clientid}\"}">>},
             {<<"event">>, <<"event">>}],
    Topics = [{Mode, unique(<<"shape_", Mode/binary>>)} || {Mode, _} <- Modes],
    [ok = kafka_bridge_broker:create_topic(Broker, T, 3, ?TOPIC_CONFIG) || {_, T} <- Topics],
    Routes = [#{<<"filter">> => <<Mode/binary, "/#">>, <<"topic">> => proplists:get_value(Mode, Topics),
                <<"value">> => Value} || {Mode, Value} <- Modes],
    Default = unique(<<"shape_default">>),
    ok = kafka_bridge_broker:create_topic(Broker, Default, 3, ?TOPIC_CONFIG),
    {ok, _} = kafka_bridge_test_lib:start_bridge(
                kafka_bridge_test_lib:config(Broker, #{<<"events">> => #{<<"message_publish">> => #{<<"topic">> => Default}},
                                                       <<"routes">> => Routes})),
    Payloads = payloads(),
    [publish(message(<<"c\"", (integer_to_binary(I))/binary>>, <<Mode/binary, "/", (integer_to_binary(I))/binary>>,
                     P, #{}))
     || {Mode, _} <- Modes, {I, P} <- Payloads],
    N = length(Payloads),
    ById = fun(Records, Id) -> maps:from_list([{Id(R), R} || R <- Records]) end,
    KeyId = fun(#{key := <<"c\"", I/binary>>}) -> binary_to_integer(I) end,
    Raw = ById(consume(Broker, proplists:get_value(<<"payload">>, Topics), N, 15000), KeyId),
    Text = ById(consume(Broker, proplists:get_value(<<"text">>, Topics), N, 15000), KeyId),
    Json = ById(consume(Broker, proplists:get_value(<<"json">>, Topics), N, 15000), KeyId),
    Event = ById(consume(Broker, proplists:get_value(<<"event">>, Topics), N, 15000), KeyId),
    lists:foreach(
      fun({I, P}) ->
              ?assertEqual({I, P}, {I, maps:get(value, maps:get(I, Raw))}),
              ?assertEqual({I, P}, {I, maps:get(value, maps:get(I, Text))}),
              #{json := J} = maps:get(I, Json),
              ?assertEqual({I, P}, {I, decoded(maps:get(<<"p">>, J), maps:get(<<"e">>, J))}),
              ?assertEqual(<<"id=c\"", (integer_to_binary(I))/binary>>, maps:get(<<"c">>, J)),
              #{json := E} = maps:get(I, Event),
              ?assertEqual({I, P}, {I, decoded(maps:get(<<"payload">>, E), maps:get(<<"payload_encoding">>, E))})
      end, Payloads),
    ?assertEqual([], [R || R = #{headers := H} <- maps:values(Raw) ++ maps:values(Text), H =/= []]),
    ?assertEqual([], consume(Broker, Default, 0, 2000)).

payloads() ->
    lists:zip(lists:seq(1, 7),
              [<<0, 255, 254, 1, 128>>,
               <<"quotes \" and \\ a newline \n and a tab \t">>,
               <<"\"", 255, "\n", 0, "}">>,
               <<"{\"a\":[1,2,{\"b\":null}]}">>,
               <<"naïve ☃"/utf8>>,
               <<>>,
               crypto:strong_rand_bytes(1024 * 1024)]).

decoded(P, <<"utf8">>) -> unicode:characters_to_binary(P);
decoded(P, <<"base64">>) -> base64:decode(P).

%% With payload_encoding = raw, a payload that is JSON is embedded as it
%% is (`${payload_encoding}' says json); one that is not is a string or
%% base64 as before.
json_payload_embedded_with_raw_encoding(Config) ->
    Broker = ?config(broker, Config),
    Topic = unique(<<"shape_raw">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    Value = <<"{\"p\":${payload},\"e\":${payload_encoding}}">>,
    {ok, _} = kafka_bridge_test_lib:start_bridge(
                kafka_bridge_test_lib:config(Broker, #{<<"payload_encoding">> => <<"raw">>,
                                                       <<"events">> => #{<<"message_publish">> => #{<<"topic">> => Topic,
                                                                                                    <<"value">> => Value}}})),
    Cases = [{<<"j">>, <<"{\"a\":[1,2]}">>}, {<<"t">>, <<"not json">>}, {<<"b">>, <<255, 0>>}],
    [publish(message(C, <<"r/1">>, P, #{})) || {C, P} <- Cases],
    Got = maps:from_list([{K, J} || #{key := K, json := J} <- consume(Broker, Topic, 3, 10000)]),
    ?assertEqual(#{<<"p">> => #{<<"a">> => [1, 2]}, <<"e">> => <<"json">>}, maps:get(<<"j">>, Got)),
    ?assertEqual(#{<<"p">> => <<"not json">>, <<"e">> => <<"utf8">>}, maps:get(<<"t">>, Got)),
    ?assertEqual(#{<<"p">> => base64:encode(<<255, 0>>), <<"e">> => <<"base64">>}, maps:get(<<"b">>, Got)).

%%--------------------------------------------------------------------
%% Timestamps
%%--------------------------------------------------------------------

%% `timestamp = now' stamps the hand-over, not the publish time, and a
%% route can choose it for its messages alone.
timestamp_now(Config) ->
    Broker = ?config(broker, Config),
    Topic = unique(<<"shape_ts">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    Routes = [#{<<"filter">> => <<"now/#">>, <<"timestamp">> => <<"now">>}],
    {ok, _} = kafka_bridge_test_lib:start_bridge(
                kafka_bridge_test_lib:config(Broker, #{<<"events">> => #{<<"message_publish">> => #{<<"topic">> => Topic}},
                                                       <<"routes">> => Routes})),
    Before = erlang:system_time(millisecond),
    publish(message(<<"now">>, <<"now/1">>, <<"x">>, #{timestamp => ?PUBLISHED_AT})),
    publish(message(<<"then">>, <<"then/1">>, <<"x">>, #{timestamp => ?PUBLISHED_AT})),
    Got = maps:from_list([{K, T} || #{key := K, timestamp := T} <- consume(Broker, Topic, 2, 10000)]),
    ?assertEqual(?PUBLISHED_AT, maps:get(<<"then">>, Got)),
    ?assert(maps:get(<<"now">>, Got) >= Before),
    ?assert(maps:get(<<"now">>, Got) =< erlang:system_time(millisecond)).

%%--------------------------------------------------------------------
%% Helpers
%%--------------------------------------------------------------------

%% Every event into one fresh topic, each with the settings Shape(Event) gives.
start_all_events(Config, Shape) ->
    Broker = ?config(broker, Config),
    Topic = unique(<<"shape">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    Events = maps:from_list([{E, maps:merge(#{<<"enable">> => true, <<"topic">> => Topic}, Shape(E))} || E <- ?EVENTS]),
    {ok, _} = kafka_bridge_test_lib:start_bridge(kafka_bridge_test_lib:config(Broker, #{<<"events">> => Events})),
    Topic.

by_hook(Records) ->
    maps:from_list([{maps:get(<<"event">>, J), J} || #{json := J} <- Records]).

%% Each hook point once, as EMQX calls them, with the same arguments every time.
fire_every_hook() ->
    kafka_bridge_test_lib:fire_every_hook([{<<"unit">>, <<"C">>}, {<<"traceparent">>, ?TRACEPARENT}]).
