%% @doc The foundation: message.publish bridged into Apache Kafka, read
%% back and checked field by field.
-module(emqx_plugin_kafka_bridge_SUITE).

-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(kafka_bridge_test_lib, [message/3, message/4, consume/3, consume/4, values/1, publish/1]).

all() ->
    [hook_registered_at_bridge_priority, utf8_payload_fields, binary_payload_base64_roundtrip,
     iodata_payload, ten_thousand_messages_and_metrics, bad_input_never_raises,
     bad_config_names_the_key, metric_names_agree].

init_per_suite(Config) ->
    Broker = kafka_bridge_broker:start(?config(priv_dir, Config)),
    [{broker, Broker} | Config].

end_per_suite(Config) ->
    kafka_bridge_broker:stop(?config(broker, Config)).

%% Each case gets its own Kafka topic and a fresh bridge publishing to it.
init_per_testcase(bad_config_names_the_key, Config) ->
    Config;
init_per_testcase(_Case, Config) ->
    Broker = ?config(broker, Config),
    Topic = kafka_bridge_test_lib:unique(<<"pub">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    BridgeConfig = kafka_bridge_test_lib:config(
                     Broker, #{<<"events">> => #{<<"message_publish">> => #{<<"topic">> => Topic}}}),
    {ok, _} = kafka_bridge_test_lib:start_bridge(BridgeConfig),
    [{topic, Topic} | Config].

end_per_testcase(_Case, _Config) ->
    kafka_bridge_test_lib:stop_bridge(),
    emqx_hooks:reset().

%%--------------------------------------------------------------------

hook_registered_at_bridge_priority(_Config) ->
    ?assertMatch([{870, {emqx_plugin_kafka_bridge, on_message_publish, [_]}}],
                 emqx_hooks:lookup('message.publish')),
    %% The fold returns the message unchanged.
    Msg = message(<<"c1">>, <<"a/b">>, <<"x">>),
    ?assertEqual(Msg, publish(Msg)),
    kafka_bridge_test_lib:stop_bridge(),
    ?assertEqual([], emqx_hooks:lookup('message.publish')).

utf8_payload_fields(Config) ->
    Id = <<16#0123456789abcdef0123456789abcdef:128>>,
    Payload = <<"température 21°C ✓"/utf8>>,
    Msg = message(<<"sensor-1">>, <<"home/kitchen/temp">>, Payload,
                  #{id => Id, qos => 2, timestamp => 1700000000456,
                    flags => #{dup => false, retain => true}}),
    publish(Msg),
    [Record] = consume(?config(broker, Config), ?config(topic, Config), 1),
    ?assertEqual(<<"sensor-1">>, maps:get(key, Record)),
    Json = maps:get(json, Record),
    ?assertEqual(<<"message.publish">>, maps:get(<<"event">>, Json)),
    ?assertEqual(<<"0123456789abcdef0123456789abcdef">>, maps:get(<<"id">>, Json)),
    ?assertEqual(<<"sensor-1">>, maps:get(<<"clientid">>, Json)),
    ?assertEqual(<<"user-sensor-1">>, maps:get(<<"username">>, Json)),
    ?assertEqual(<<"home/kitchen/temp">>, maps:get(<<"topic">>, Json)),
    ?assertEqual(2, maps:get(<<"qos">>, Json)),
    ?assertEqual(true, maps:get(<<"retain">>, Json)),
    ?assertEqual(Payload, maps:get(<<"payload">>, Json)),
    ?assertEqual(<<"utf8">>, maps:get(<<"payload_encoding">>, Json)),
    ?assertEqual(<<"192.0.2.10">>, maps:get(<<"peerhost">>, Json)),
    ?assertEqual(1700000000456, maps:get(<<"timestamp">>, Json)),
    ?assertEqual(atom_to_binary(node()), maps:get(<<"node">>, Json)).

binary_payload_base64_roundtrip(Config) ->
    Payload = <<0, 255, 254, 128, 10, 13, 0, 1, 2, 3, 200>>,
    Msg = message(<<"bin">>, <<"raw/bytes">>, Payload,
                  #{headers => #{username => undefined, peerhost => {16#2001, 16#db8, 0, 0, 0, 0, 0, 1}}}),
    publish(Msg),
    [#{json := Json}] = consume(?config(broker, Config), ?config(topic, Config), 1),
    ?assertEqual(<<"base64">>, maps:get(<<"payload_encoding">>, Json)),
    ?assertEqual(Payload, base64:decode(maps:get(<<"payload">>, Json))),
    ?assertEqual(null, maps:get(<<"username">>, Json)),
    ?assertEqual(<<"2001:db8::1">>, maps:get(<<"peerhost">>, Json)).

iodata_payload(Config) ->
    Payload = [<<"he">>, [$l, <<"l">>], "o ", <<255>>],
    publish(message(<<"io">>, <<"io/data">>, Payload)),
    publish(message(<<"io">>, <<"io/text">>, [<<"plain ">>, "text"])),
    Records = consume(?config(broker, Config), ?config(topic, Config), 2),
    ByTopic = maps:from_list([{maps:get(<<"topic">>, J), J} || J <- values(Records)]),
    #{<<"io/data">> := Bin, <<"io/text">> := Text} = ByTopic,
    ?assertEqual(<<"hello ", 255>>, base64:decode(maps:get(<<"payload">>, Bin))),
    ?assertEqual(<<"plain text">>, maps:get(<<"payload">>, Text)),
    ?assertEqual(<<"utf8">>, maps:get(<<"payload_encoding">>, Text)).

ten_thousand_messages_and_metrics(Config) ->
    N = 10000,
    Ids = [<<I:128>> || I <- lists:seq(1, N)],
    [publish(message(<<"c", (integer_to_binary(I rem 50))/binary>>, <<"load/", (integer_to_binary(I))/binary>>,
                     <<"payload ", (integer_to_binary(I))/binary>>, #{id => <<I:128>>}))
     || I <- lists:seq(1, N)],
    Metrics = kafka_bridge_test_lib:wait_for_delivered(N, 30000),
    Records = consume(?config(broker, Config), ?config(topic, Config), N, 10000),
    Got = lists:usort(kafka_bridge_test_lib:ids(Records)),
    ?assertEqual(N, length(Records)),
    ?assertEqual([binary:decode_unsigned(Id) || Id <- Ids], Got),
    ct:log("metrics: ~p", [Metrics]),
    ?assertMatch(#{received := N, enqueued := N, delivered := N, failed := 0, dropped := 0,
                   filtered_out := 0, queue_len := 0, inflight := 0, queue_bytes := 0}, Metrics),
    #{topics := #{}} = Metrics,
    ?assertEqual(#{delivered => N, failed => 0}, maps:get(?config(topic, Config), maps:get(topics, Metrics))).

%% Malformed hook arguments are counted, never raised into the hook chain.
bad_input_never_raises(Config) ->
    Bridge = emqx_plugin_kafka_bridge:bridge(),
    Bad = [not_a_record, {message, 1, 2}, setelement(7, message(<<"c">>, <<"t">>, <<"p">>), 42),
           setelement(8, message(<<"c">>, <<"t">>, <<"p">>), [1000]), erlang:make_tuple(10, x)],
    [?assertEqual({ok, B}, emqx_plugin_kafka_bridge:on_message_publish(B, Bridge)) || B <- Bad],
    %% Through the hook chain too, as EMQX runs it: a raise would be caught
    %% and counted there (and the message passed on unchanged).
    Before = emqx_hooks:exceptions(),
    [?assertEqual(B, publish(B)) || B <- Bad],
    ?assertEqual(Before, emqx_hooks:exceptions()),
    publish(message(<<"ok">>, <<"after/bad">>, <<"still works">>)),
    [#{json := Json}] = consume(?config(broker, Config), ?config(topic, Config), 1),
    ?assertEqual(<<"still works">>, maps:get(<<"payload">>, Json)),
    Metrics = kafka_bridge_test_lib:wait_for_delivered(1, 5000),
    ?assertMatch(#{received := 11, dropped_invalid := 10, delivered := 1}, Metrics).

bad_config_names_the_key(Config) ->
    Broker = ?config(broker, Config),
    Cases = [{#{}, <<"kafka.bootstrap_servers">>},
             {#{<<"kafka">> => #{<<"bootstrap_servers">> => 9092}}, <<"kafka.bootstrap_servers">>},
             {kafka_bridge_test_lib:config(Broker, #{<<"kafka">> => #{<<"properties">> => #{<<"acks">> => <<"sometimes">>}}}),
              <<"kafka.properties.acks">>},
             {kafka_bridge_test_lib:config(Broker, #{<<"kafka">> => #{<<"properties">> => #{<<"no.such.property">> => <<"1">>}}}),
              <<"kafka.properties.no.such.property">>},
             {kafka_bridge_test_lib:config(Broker, #{<<"events">> => #{<<"message_publish">> => #{<<"enable">> => <<"yes">>}}}),
              <<"events.message_publish.enable">>},
             {kafka_bridge_test_lib:config(Broker, #{<<"buffer">> => #{<<"max_messages">> => -1}}),
              <<"buffer.max_messages">>}],
    lists:foreach(
      fun({BadConfig, Key}) ->
              kafka_bridge_test_lib:set_plugin_config(BadConfig),
              Result = application:start(emqx_plugin_kafka_bridge),
              ct:log("~p -> ~p", [BadConfig, Result]),
              ?assertMatch({error, _}, Result),
              {error, Reason} = Result,
              ?assertNotEqual(nomatch, binary:match(iolist_to_binary(io_lib:format("~p", [Reason])), Key)),
              ?assertEqual(undefined, whereis(emqx_plugin_kafka_bridge_sup))
      end, Cases).

%% The NIF's metrics/0 is the one list of metric names: the Prometheus text
%% and README's table must name each of them, and nothing else.
metric_names_agree(_Config) ->
    publish(message(<<"c">>, <<"names/1">>, <<"x">>)),
    Metrics = kafka_bridge_test_lib:wait_for_delivered(1, 5000),
    Structured = [delivery_latency_ms, topics, other_topics],
    Scalars = lists:sort(maps:keys(maps:filter(fun(_, V) -> is_integer(V) end, Metrics))),
    ?assertEqual(lists:sort(maps:keys(Metrics) -- Structured), Scalars),
    Text = emqx_plugin_kafka_bridge:metrics_text(),
    {match, Typed} = re:run(Text, "^# TYPE emqx_kafka_bridge_(\\w+?)(?:_total)? (counter|gauge)$",
                            [multiline, global, {capture, [1], binary}]),
    Exported = lists:usort([binary_to_atom(N) || [N] <- Typed]),
    %% Besides the scalars: up and connected (from status/0), and the series
    %% made of the structured ones (per topic, other topics, latency).
    FromStructured = [up, connected, topic_delivered, topic_failed, other_topics_delivered,
                      other_topics_failed, delivery_latency_ms],
    ?assertEqual(Scalars -- [dropped], Exported -- FromStructured),
    {ok, Readme} = file:read_file(filename:join(kafka_bridge_test_lib:project_root(), "README.md")),
    [_, AfterHeading] = binary:split(Readme, <<"\n## Metrics\n">>),
    [Section | _] = binary:split(AfterHeading, <<"\n## ">>),
    Missing = [K || K <- maps:keys(Metrics), nomatch =:= binary:match(Section, <<"`", (atom_to_binary(K))/binary, "`">>)],
    ?assertEqual([], Missing).
