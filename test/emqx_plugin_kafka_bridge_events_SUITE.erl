%% @doc Every hook point, both formats, the three payload encodings,
%% filters, routes, keys and headers: each checked by reading Kafka.
-module(emqx_plugin_kafka_bridge_events_SUITE).

-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(kafka_bridge_test_lib, [message/3, message/4, consume/3, consume/4,
                                values/1, unique/1, publish/1]).

-define(EVENTS, [<<"client_connected">>, <<"client_disconnected">>, <<"session_subscribed">>,
                 <<"session_unsubscribed">>, <<"message_publish">>, <<"message_delivered">>,
                 <<"message_acked">>, <<"message_dropped">>]).

all() ->
    [every_event_emqx_format, every_event_legacy_format, legacy_publish_bytes,
     payload_encoding_base64, payload_encoding_raw_with_headers, payload_sizes_and_shapes,
     filters_with_wildcards_and_sys, only_enabled_hooks_are_registered, routes_first_match_and_templates,
     key_strategies_and_partition_stability, user_properties_as_headers, trace_context_as_headers,
     bad_configs_are_rejected].

init_per_suite(Config) ->
    [{broker, kafka_bridge_broker:start(?config(priv_dir, Config))} | Config].

end_per_suite(Config) ->
    kafka_bridge_broker:stop(?config(broker, Config)).

end_per_testcase(_Case, _Config) ->
    kafka_bridge_test_lib:stop_bridge(),
    emqx_hooks:reset().

%% Starts the bridge with every event enabled into one fresh topic.
start_all_events(Config, Overrides) ->
    Broker = ?config(broker, Config),
    Topic = unique(<<"events">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    Events = maps:from_list([{E, #{<<"enable">> => true, <<"topic">> => Topic}} || E <- ?EVENTS]),
    {ok, _} = kafka_bridge_test_lib:start_bridge(
                kafka_bridge_test_lib:config(Broker, maps:merge(#{<<"events">> => Events}, Overrides))),
    Topic.

%% Starts the bridge with only message.publish, into a fresh topic.
start_publish(Config, Overrides) ->
    start_publish(Config, Overrides, []).

%% The same into a topic created with TopicConfigs.
start_publish(Config, Overrides, TopicConfigs) ->
    Broker = ?config(broker, Config),
    Topic = unique(<<"pub">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic, 3, TopicConfigs),
    Events = #{<<"message_publish">> => #{<<"topic">> => Topic}},
    {ok, _} = kafka_bridge_test_lib:start_bridge(
                kafka_bridge_test_lib:config(Broker, deep_events(Events, Overrides))),
    Topic.

deep_events(Events, Overrides = #{<<"events">> := More}) ->
    Merged = maps:fold(fun(K, V, Acc) -> Acc#{K => maps:merge(maps:get(K, Acc, #{}), V)} end, Events, More),
    Overrides#{<<"events">> => Merged};
deep_events(Events, Overrides) ->
    Overrides#{<<"events">> => Events}.

%% Fires each hook point once, the way EMQX calls them.
fire_every_hook() ->
    kafka_bridge_test_lib:fire_every_hook([{<<"unit">>, <<"C">>}]).

by_event(Records, Field) ->
    maps:from_list([{maps:get(Field, J), J} || J <- values(Records)]).

%%--------------------------------------------------------------------

every_event_emqx_format(Config) ->
    Topic = start_all_events(Config, #{}),
    fire_every_hook(),
    Records = consume(?config(broker, Config), Topic, 8),
    ?assertEqual(8, length(Records)),
    Events = by_event(Records, <<"event">>),
    Node = atom_to_binary(node()),
    [?assertEqual(Node, maps:get(<<"node">>, J)) || J <- maps:values(Events)],
    [?assert(is_integer(maps:get(<<"timestamp">>, J))) || J <- maps:values(Events)],

    Connected = maps:get(<<"client.connected">>, Events),
    ?assertMatch(#{<<"clientid">> := <<"conn-1">>, <<"username">> := <<"user-conn-1">>,
                   <<"peerhost">> := <<"198.51.100.7">>, <<"sockport">> := 1883,
                   <<"proto_name">> := <<"MQTT">>, <<"proto_ver">> := 5, <<"keepalive">> := 60,
                   <<"clean_start">> := true, <<"expiry_interval">> := 7200,
                   <<"connected_at">> := 1700000000123, <<"is_bridge">> := false}, Connected),

    Disconnected = maps:get(<<"client.disconnected">>, Events),
    ?assertMatch(#{<<"clientid">> := <<"conn-1">>, <<"username">> := <<"user-conn-1">>,
                   <<"peerhost">> := <<"198.51.100.7">>, <<"reason">> := <<"keepalive_timeout">>,
                   <<"disconnected_at">> := 1700000005000}, Disconnected),

    [?assertMatch(#{<<"clientid">> := <<"sub-1">>, <<"username">> := <<"user-sub-1">>,
                    <<"peerhost">> := <<"198.51.100.7">>, <<"topic">> := <<"room/+/temp">>, <<"qos">> := 1},
                  maps:get(E, Events))
     || E <- [<<"session.subscribed">>, <<"session.unsubscribed">>]],

    Id = iolist_to_binary(io_lib:format("~32.16.0b", [16#ab])),
    PubProps = #{<<"User-Property">> => #{<<"unit">> => <<"C">>}, <<"Content-Type">> => <<"text/plain">>},
    MessageFields = #{<<"id">> => Id, <<"topic">> => <<"room/1/temp">>, <<"qos">> => 1,
                      <<"retain">> => false, <<"payload">> => <<"21.5">>,
                      <<"payload_encoding">> => <<"utf8">>, <<"peerhost">> => <<"10.1.2.3">>,
                      <<"pub_props">> => PubProps, <<"timestamp">> => 1700000000999,
                      <<"publish_received_at">> => 1700000000999},
    Publish = maps:get(<<"message.publish">>, Events),
    assert_fields(MessageFields#{<<"clientid">> => <<"pub-1">>, <<"username">> => <<"pub-user">>}, Publish),
    [assert_fields(MessageFields#{<<"clientid">> => <<"sub-1">>, <<"username">> => <<"user-sub-1">>,
                                  <<"from_clientid">> => <<"pub-1">>, <<"from_username">> => <<"pub-user">>},
                   maps:get(E, Events))
     || E <- [<<"message.delivered">>, <<"message.acked">>]],
    assert_fields(MessageFields#{<<"clientid">> => <<"pub-1">>, <<"reason">> => <<"no_subscribers">>},
                  maps:get(<<"message.dropped">>, Events)),
    %% Keys: the client the event is about.
    Keys = lists:sort([K || #{key := K} <- Records]),
    ?assertEqual(lists:sort([<<"conn-1">>, <<"conn-1">>, <<"sub-1">>, <<"sub-1">>, <<"pub-1">>,
                             <<"sub-1">>, <<"sub-1">>, <<"pub-1">>]), Keys).

assert_fields(Expected, Json) ->
    maps:foreach(fun(K, V) -> ?assertEqual({K, V}, {K, maps:get(K, Json, missing)}) end, Expected).

every_event_legacy_format(Config) ->
    Topic = start_all_events(Config, #{<<"format">> => <<"legacy">>}),
    fire_every_hook(),
    Records = consume(?config(broker, Config), Topic, 8),
    Types = by_event(Records, <<"type">>),
    Node = atom_to_binary(node()),
    ?assertEqual(lists:sort([<<"connected">>, <<"disconnected">>, <<"subscribed">>, <<"unsubscribed">>,
                             <<"published">>, <<"delivered">>, <<"acked">>, <<"dropped">>]),
                 lists:sort(maps:keys(Types))),
    [?assertEqual(Node, maps:get(<<"cluster_node">>, J)) || J <- maps:values(Types)],
    ?assertMatch(#{<<"clientid">> := <<"conn-1">>}, maps:get(<<"connected">>, Types)),
    ?assertMatch(#{<<"clientid">> := <<"conn-1">>, <<"reason">> := <<"keepalive_timeout">>},
                 maps:get(<<"disconnected">>, Types)),
    ?assertMatch(#{<<"client_id">> := <<"sub-1">>, <<"topic">> := <<"room/+/temp">>},
                 maps:get(<<"subscribed">>, Types)),
    ?assertMatch(#{<<"client_id">> := <<"pub-1">>, <<"topic">> := <<"room/1/temp">>, <<"payload">> := <<"21.5">>,
                   <<"qos">> := 1, <<"ts">> := 1700000000}, maps:get(<<"published">>, Types)),
    ?assertMatch(#{<<"client_id">> := <<"sub-1">>, <<"from">> := <<"pub-1">>, <<"ts">> := 1700000000},
                 maps:get(<<"delivered">>, Types)),
    ?assertMatch(#{<<"client_id">> := <<"sub-1">>, <<"from">> := <<"pub-1">>}, maps:get(<<"acked">>, Types)),
    ?assertMatch(#{<<"client_id">> := <<"pub-1">>, <<"reason">> := <<"no_subscribers">>},
                 maps:get(<<"dropped">>, Types)),
    %% Exact bytes, as mochijson2 wrote them in the seed plugin.
    #{value := Connected} = hd([R || R = #{json := #{<<"type">> := <<"connected">>}} <- Records]),
    ?assertMatch({match, _}, re:run(Connected, <<"^\\{\"type\":\"connected\",\"clientid\":\"conn-1\",\"cluster_node\":\"",
                                                 Node/binary, "\",\"ts\":[0-9]+\\}$">>)).

%% The seed plugin's byte layout, including mochijson2's \uXXXX escapes.
legacy_publish_bytes(Config) ->
    Topic = start_publish(Config, #{<<"format">> => <<"legacy">>}),
    publish(message(<<"c-1">>, <<"t/é"/utf8>>, <<"h\"é\n😀"/utf8>>, #{qos => 2, timestamp => 1700000001999})),
    [#{value := Value}] = consume(?config(broker, Config), Topic, 1),
    Expected = <<"{\"type\":\"published\",\"client_id\":\"c-1\",\"topic\":\"t/\\u00e9\",",
                 "\"payload\":\"h\\\"\\u00e9\\n\\ud83d\\ude00\",\"qos\":2,\"cluster_node\":\"",
                 (atom_to_binary(node()))/binary, "\",\"ts\":1700000001}">>,
    ?assertEqual(Expected, Value).

payload_encoding_base64(Config) ->
    Topic = start_publish(Config, #{<<"payload_encoding">> => <<"base64">>}),
    publish(message(<<"c">>, <<"b/1">>, <<"plain text">>)),
    [#{json := Json}] = consume(?config(broker, Config), Topic, 1),
    ?assertEqual(<<"base64">>, maps:get(<<"payload_encoding">>, Json)),
    ?assertEqual(<<"plain text">>, base64:decode(maps:get(<<"payload">>, Json))).

payload_encoding_raw_with_headers(Config) ->
    Topic = start_publish(Config, #{<<"payload_encoding">> => <<"raw">>}),
    Payload = <<0, 1, 2, 255, "raw">>,
    publish(message(<<"raw-client">>, <<"r/1">>, Payload, #{id => <<7:128>>, qos => 0, timestamp => 1700000002000})),
    [Record] = consume(?config(broker, Config), Topic, 1),
    ?assertEqual(Payload, maps:get(value, Record)),
    ?assertEqual(<<"raw-client">>, maps:get(key, Record)),
    Headers = maps:from_list(maps:get(headers, Record)),
    ?assertEqual(#{<<"event">> => <<"message.publish">>, <<"clientid">> => <<"raw-client">>,
                   <<"topic">> => <<"r/1">>, <<"qos">> => <<"0">>,
                   <<"id">> => iolist_to_binary(io_lib:format("~32.16.0b", [7])),
                   <<"timestamp">> => <<"1700000002000">>, <<"node">> => atom_to_binary(node())}, Headers).

%% 0 B to 1 MB payloads, a 65535-byte UTF-8 topic, missing and unknown
%% header keys, and both shapes of Extra.
%% A 1 MB binary payload is a 1.4 MB record (base64 in JSON): more than
%% Kafka's default 1 MB, so the topic allows what README tells operators
%% to allow, the bridge's own message.max.bytes.
payload_sizes_and_shapes(Config) ->
    Topic = start_publish(Config, #{<<"events">> => #{<<"message_publish">> => #{<<"filters">> => [<<"#">>]}}},
                          [{"max.message.bytes", "2097152"}]),
    Big = crypto:strong_rand_bytes(1024 * 1024),
    LongTopic = binary:copy(<<"é"/utf8>>, 32767),
    Cases = [{<<"empty">>, <<"s/empty">>, <<>>, #{}},
             {<<"big">>, <<"s/big">>, Big, #{}},
             {<<"big-text">>, <<"s/big-text">>, binary:copy(<<"a">>, 1024 * 1024), #{}},
             {<<"long-topic">>, LongTopic, <<"x">>, #{}},
             {<<"no-headers">>, <<"s/no-headers">>, <<"x">>, #{headers => #{}}},
             {<<"old-extra">>, <<"s/old-extra">>, <<"x">>, #{extra => []}}],
    [publish(message(C, T, P, Opts)) || {C, T, P, Opts} <- Cases],
    Records = consume(?config(broker, Config), Topic, length(Cases), 10000),
    ByClient = by_event(Records, <<"clientid">>),
    ?assertEqual(<<>>, maps:get(<<"payload">>, maps:get(<<"empty">>, ByClient))),
    ?assertEqual(Big, base64:decode(maps:get(<<"payload">>, maps:get(<<"big">>, ByClient)))),
    ?assertEqual(1024 * 1024, byte_size(maps:get(<<"payload">>, maps:get(<<"big-text">>, ByClient)))),
    ?assertEqual(LongTopic, maps:get(<<"topic">>, maps:get(<<"long-topic">>, ByClient))),
    ?assertMatch(#{<<"username">> := null, <<"peerhost">> := null, <<"pub_props">> := #{}},
                 maps:get(<<"no-headers">>, ByClient)),
    ?assertMatch(#{<<"payload">> := <<"x">>}, maps:get(<<"old-extra">>, ByClient)).

filters_with_wildcards_and_sys(Config) ->
    Filters = [<<"sensors/+/temp">>, <<"alarms/#">>, <<"$SYS/brokers/#">>],
    Topic = start_publish(Config, #{<<"events">> => #{<<"message_publish">> => #{<<"filters">> => Filters}}}),
    Topics = [<<"sensors/a/temp">>, <<"sensors/a/hum">>, <<"sensors/a/temp/x">>, <<"alarms">>,
              <<"alarms/fire/1">>, <<"$SYS/brokers/n1/uptime">>, <<"$SYS/other">>, <<"other">>],
    [publish(message(<<"f">>, T, <<"p">>)) || T <- Topics],
    Got = lists:sort([maps:get(<<"topic">>, J) || J <- values(consume(?config(broker, Config), Topic, 4))]),
    ?assertEqual(lists:sort([<<"sensors/a/temp">>, <<"alarms">>, <<"alarms/fire/1">>, <<"$SYS/brokers/n1/uptime">>]), Got),
    ?assertMatch(#{received := 8, filtered_out := 4}, kafka_bridge_test_lib:wait_for_delivered(4, 5000)),
    %% The default filter "#" never matches $SYS topics.
    kafka_bridge_test_lib:stop_bridge(),
    Topic2 = start_publish(Config, #{}),
    [publish(message(<<"f">>, T, <<"p">>)) || T <- [<<"$SYS/brokers">>, <<"plain">>]],
    ?assertEqual([<<"plain">>], [maps:get(<<"topic">>, J) || J <- values(consume(?config(broker, Config), Topic2, 2, 2000))]).

only_enabled_hooks_are_registered(Config) ->
    start_publish(Config, #{<<"events">> => #{<<"client_connected">> => #{<<"enable">> => false},
                                              <<"message_acked">> => #{<<"enable">> => true}}}),
    Registered = [HP || HP <- ['client.connected', 'client.disconnected', 'session.subscribed',
                               'session.unsubscribed', 'message.publish', 'message.delivered',
                               'message.acked', 'message.dropped'],
                        emqx_hooks:lookup(HP) =/= []],
    ?assertEqual(['client.disconnected', 'session.subscribed', 'session.unsubscribed',
                  'message.publish', 'message.acked'], Registered).

routes_first_match_and_templates(Config) ->
    Broker = ?config(broker, Config),
    [ok = kafka_bridge_broker:create_topic(Broker, T)
     || T <- [<<"route_a">>, <<"tpl_dev-1">>, <<"t.x.1._">>, <<"shadowed">>]],
    Routes = [#{<<"filter">> => <<"a/#">>, <<"topic">> => <<"route_a">>},
              #{<<"filter">> => <<"a/b/#">>, <<"topic">> => <<"shadowed">>},
              #{<<"filter">> => <<"tpl/+">>, <<"topic">> => <<"tpl_${clientid}">>},
              #{<<"filter">> => <<"t/#">>, <<"topic">> => <<"${topic}">>, <<"key">> => <<"${username}!">>}],
    Default = start_publish(Config, #{<<"routes">> => Routes}),
    publish(message(<<"dev-1">>, <<"a/b/c">>, <<"1">>)),
    publish(message(<<"dev-1">>, <<"tpl/x">>, <<"2">>)),
    publish(message(<<"dev-1">>, <<"t/x/1/ü"/utf8>>, <<"3">>)),
    publish(message(<<"dev-1">>, <<"elsewhere">>, <<"4">>)),
    %% All four are in Kafka: a reader that reaches the end of a topic has
    %% seen everything it will get.
    #{delivered := 4} = kafka_bridge_test_lib:wait_for_delivered(4, 10000),
    Payloads = fun(T, N) -> [maps:get(<<"payload">>, J) || J <- values(consume(Broker, T, N, 3000))] end,
    ?assertEqual([<<"1">>], Payloads(<<"route_a">>, 1)),
    ?assertEqual([], Payloads(<<"shadowed">>, 0)),
    ?assertEqual([<<"2">>], Payloads(<<"tpl_dev-1">>, 1)),
    [Templated] = consume(Broker, <<"t.x.1._">>, 1, 3000),
    ?assertEqual(<<"user-dev-1!">>, maps:get(key, Templated)),
    ?assertEqual([<<"4">>], Payloads(Default, 1)).

key_strategies_and_partition_stability(Config) ->
    Broker = ?config(broker, Config),
    Check = fun(KeySpec, Expect) ->
                    Topic = start_publish(Config, #{<<"events">> => #{<<"message_publish">> => #{<<"key">> => KeySpec}}}),
                    publish(message(<<"k-client">>, <<"k/topic">>, <<"v">>)),
                    [#{key := Key}] = consume(Broker, Topic, 1),
                    ?assertEqual({KeySpec, Expect}, {KeySpec, Key}),
                    kafka_bridge_test_lib:stop_bridge()
            end,
    Check(<<"clientid">>, <<"k-client">>),
    Check(<<"topic">>, <<"k/topic">>),
    Check(<<"none">>, undefined),
    Check(<<"${clientid}/${topic}">>, <<"k-client/k/topic">>),
    %% Same clientid, same partition (murmur2_random, as the Java client).
    Topic = start_publish(Config, #{}),
    Clients = [<<"device-", (integer_to_binary(I))/binary>> || I <- lists:seq(1, 12)],
    [publish(message(C, <<"p/", C/binary>>, integer_to_binary(N))) || N <- lists:seq(1, 10), C <- Clients],
    Records = consume(Broker, Topic, 120),
    ?assertEqual(120, length(Records)),
    PartitionsByKey = lists:foldl(fun(#{key := K, partition := P}, Acc) ->
                                          maps:update_with(K, fun(S) -> lists:usort([P | S]) end, [P], Acc)
                                  end, #{}, Records),
    [?assertMatch({_, [_]}, {K, Ps}) || {K, Ps} <- maps:to_list(PartitionsByKey)],
    ?assert(length(lists:usort(lists:append(maps:values(PartitionsByKey)))) > 1).

user_properties_as_headers(Config) ->
    Topic = start_publish(Config, #{<<"headers">> => #{<<"user_properties">> => true}}),
    Props = #{'User-Property' => [{<<"trace-id">>, <<"abc">>}, {<<"tenant">>, <<"t1">>}]},
    publish(message(<<"h">>, <<"h/1">>, <<"v">>, #{headers => #{properties => Props}})),
    [#{headers := Headers, json := Json}] = consume(?config(broker, Config), Topic, 1),
    ?assertEqual([{<<"trace-id">>, <<"abc">>}, {<<"tenant">>, <<"t1">>}], Headers),
    ?assertEqual(#{<<"User-Property">> => #{<<"trace-id">> => <<"abc">>, <<"tenant">> => <<"t1">>}},
                 maps:get(<<"pub_props">>, Json)).

%% headers.trace_context: only traceparent and tracestate (named in any case
%% in MQTT) become the Kafka headers traceparent and tracestate, byte for
%% byte, in the JSON formats and with payload_encoding = raw; other
%% User-Properties stay out, and a message without them has no headers.
trace_context_as_headers(Config) ->
    Parent = <<"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01">>,
    State = <<"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE">>,
    Props = #{'User-Property' => [{<<"tenant">>, <<"t1">>}, {<<"traceparent">>, Parent},
                                  {<<"TraceState">>, State}]},
    Traced = fun(Payload) -> message(<<"h">>, <<"h/1">>, Payload, #{headers => #{properties => Props}}) end,
    Expected = [{<<"traceparent">>, Parent}, {<<"tracestate">>, State}],
    Topic = start_publish(Config, #{<<"headers">> => #{<<"trace_context">> => true}}),
    publish(Traced(<<"traced">>)),
    publish(message(<<"h">>, <<"h/1">>, <<"plain">>)),
    Records = consume(?config(broker, Config), Topic, 2),
    ?assertEqual([{<<"plain">>, []}, {<<"traced">>, Expected}],
                 lists:sort([{maps:get(<<"payload">>, Json), Headers} || #{json := Json, headers := Headers} <- Records])),
    kafka_bridge_test_lib:stop_bridge(),
    RawTopic = start_publish(Config, #{<<"headers">> => #{<<"trace_context">> => true},
                                       <<"payload_encoding">> => <<"raw">>}),
    publish(Traced(<<"raw">>)),
    [#{value := <<"raw">>, headers := RawHeaders}] = consume(?config(broker, Config), RawTopic, 1),
    ?assertEqual(Expected, [H || {Name, _} = H <- RawHeaders, lists:member(Name, [<<"traceparent">>, <<"tracestate">>])]),
    ?assertNot(lists:keymember(<<"tenant">>, 1, RawHeaders)).

bad_configs_are_rejected(Config) ->
    Broker = ?config(broker, Config),
    Cases = [{#{<<"events">> => #{<<"message_publish">> => #{<<"filters">> => [<<"a/#/b">>]}}},
              [<<"events.message_publish.filters">>, <<"a/#/b">>]},
             {#{<<"events">> => #{<<"message_published">> => #{<<"enable">> => true}}},
              [<<"events.message_published">>, <<"unknown key">>]},
             {#{<<"format">> => <<"xml">>}, [<<"format">>, <<"xml">>]},
             {#{<<"payload_encoding">> => <<"hex">>}, [<<"payload_encoding">>, <<"hex">>]},
             {#{<<"routes">> => [#{<<"filter">> => <<"a/+">>, <<"topic">> => <<"t_${peer}">>}]},
              [<<"routes[1].topic">>, <<"${peer}">>]},
             {#{<<"routes">> => [#{<<"filter">> => <<"a/+/#/c">>}]}, [<<"routes[1].filter">>, <<"a/+/#/c">>]},
             {#{<<"events">> => #{<<"client_connected">> => #{<<"key">> => <<"random">>}}},
              [<<"events.client_connected.key">>, <<"random">>]},
             {#{<<"events">> => #{<<"message_publish">> => #{<<"topic">> => <<"bad topic!">>}}},
              [<<"events.message_publish.topic">>, <<"bad topic!">>]}],
    lists:foreach(
      fun({Overrides, Needles}) ->
              Result = kafka_bridge_test_lib:start_bridge(kafka_bridge_test_lib:config(Broker, Overrides)),
              ct:log("~p -> ~p", [Overrides, Result]),
              {error, Reason} = Result,
              Text = iolist_to_binary(io_lib:format("~p", [Reason])),
              [?assertNotEqual({nomatch, N, Text}, {binary:match(Text, N), N, Text}) || N <- Needles]
      end, Cases).
