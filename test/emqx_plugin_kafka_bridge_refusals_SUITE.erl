%% @doc What Apache Kafka refuses, on one broker with the StandardAuthorizer:
%% a topic the bridge's principal may not write, a record over the topic's
%% max.message.bytes, a topic deleted and re-created mid-stream, partitions
%% added mid-stream and a producer byte-rate quota. Each refusal is
%% counted exactly, per topic, named in status() and logged at a limited
%% rate, while every other topic keeps flowing.
-module(emqx_plugin_kafka_bridge_refusals_SUITE).

-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(kafka_bridge_test_lib, [consume/4, ids/1, unique/1, publish_range/3, metric/1, publish/1, message/4]).

-define(PASSWORD, "Bridge-Pa55-never-shown").

all() ->
    [topic_authorization_failed_others_flow, record_too_large_fails_at_once, topic_deleted_and_recreated,
     partitions_added_mid_stream, byte_rate_quota_slows_loses_nothing, no_idempotent_write_waits_for_the_acl,
     no_idempotent_write_spools_for_the_acl].

init_per_suite(Config) ->
    Dir = filename:join(?config(priv_dir, Config), "refusals"),
    Certs = kafka_bridge_test_lib:make_certificates(filename:join(Dir, "certs"), <<"unused">>),
    %% The bridge signs in as `bridge' and may do only what an ACL grants;
    %% the suite itself administers and reads over PLAINTEXT, as a super
    %% user (ANONYMOUS).
    Broker = kafka_bridge_broker:start(
               Dir, #{secured => Certs, users => [{U, ?PASSWORD} || U <- ["bridge", "stranger", "outsider"]],
                      properties => [{"authorizer.class.name",
                                      "org.apache.kafka.metadata.authorizer.StandardAuthorizer"},
                                     %% Quotas measured over 2 s rather than 11: a
                                     %% short burst is throttled too.
                                     {"quota.window.num", "2"},
                                     {"quota.window.size.seconds", "1"}]}),
    [{broker, Broker} | Config].

end_per_suite(_Config) ->
    kafka_bridge_broker:stop_all().

end_per_testcase(_Case, _Config) ->
    kafka_bridge_test_lib:stop_bridge(),
    emqx_hooks:reset(),
    _ = logger:remove_handler(kafka_bridge_capture),
    ok.

%%--------------------------------------------------------------------
%% Helpers
%%--------------------------------------------------------------------

%% The bridge as principal `bridge' over SASL_PLAINTEXT: message.publish to
%% Default, Routes ([{Filter, Topic}]) before it, Properties for librdkafka.
start_bridge(Config, Default, Routes, Properties) ->
    start_bridge(Config, <<"bridge">>, Default, Routes, Properties).

start_bridge(Config, User, Default, Routes, Properties) ->
    start_bridge(Config, User, Default, Routes, Properties, #{}).

start_bridge(Config, User, Default, Routes, Properties, Buffer) ->
    Broker = ?config(broker, Config),
    {ok, _} = kafka_bridge_test_lib:start_bridge(
                #{<<"kafka">> => #{<<"bootstrap_servers">> => kafka_bridge_broker:bootstrap(Broker, sasl_plaintext),
                                   <<"sasl">> => #{<<"mechanism">> => <<"scram_sha_512">>,
                                                   <<"username">> => User,
                                                   <<"password">> => list_to_binary(?PASSWORD)},
                                   <<"properties">> => Properties},
                  <<"events">> => #{<<"message_publish">> => #{<<"topic">> => Default}},
                  <<"routes">> => [#{<<"filter">> => F, <<"topic">> => T} || {F, T} <- Routes],
                  <<"buffer">> => Buffer#{<<"flush_timeout">> => 1000}}).

%% Topics the bridge (User) may write (and describe, for their metadata).
grant_write(Config, Topics) ->
    grant_write(Config, "bridge", Topics).

grant_write(Config, User, Topics) ->
    Broker = ?config(broker, Config),
    _ = kafka_bridge_broker:kafka_class(
          Broker, "org.apache.kafka.tools.AclCommand",
          ["--bootstrap-server", kafka_bridge_broker:bootstrap(Broker, plaintext), "--add",
           "--allow-principal", "User:" ++ User, "--operation", "Write", "--operation", "Describe"]
          ++ lists:append([["--topic", T] || T <- Topics])),
    ok.

new_topics(Config, Prefixes) ->
    new_topics(Config, Prefixes, 3).

new_topics(Config, Prefixes, Partitions) ->
    Topics = [unique(P) || P <- Prefixes],
    [ok = kafka_bridge_broker:create_topic(?config(broker, Config), T, Partitions) || T <- Topics],
    ok = grant_write(Config, Topics),
    Topics.

topic_metrics(Topic) ->
    maps:get(Topic, maps:get(topics, emqx_plugin_kafka_bridge:metrics()), #{delivered => 0, failed => 0}).

last_error() ->
    maps:get(last_error, emqx_plugin_kafka_bridge:status()).

%% The captured kafka_delivery_failed lines.
failure_lines() ->
    [L || L <- kafka_bridge_test_lib:captured_logs(), binary:match(L, <<"kafka_delivery_failed">>) =/= nomatch].

%% Waits until delivered + failed reaches N; returns the metrics.
settled(N, Timeout) ->
    kafka_bridge_test_lib:wait_for_delivered(N, Timeout).

%% Ids From..To published to MqttTopic with Size random (incompressible)
%% bytes of payload each.
publish_sized(From, To, MqttTopic, Size) ->
    [publish(message(<<"big-client">>, MqttTopic, crypto:strong_rand_bytes(Size), #{id => <<I:128>>}))
     || I <- lists:seq(From, To)],
    ok.

%%--------------------------------------------------------------------
%% Cases
%%--------------------------------------------------------------------

%% The principal may write one topic and not the other: Kafka answers
%% TOPIC_AUTHORIZATION_FAILED for the second; its events are counted as
%% failed on that topic and named in status() and in a limited number of
%% log lines, and every event of the first topic arrives.
topic_authorization_failed_others_flow(Config) ->
    [Allowed] = new_topics(Config, [<<"acl_allowed">>]),
    Denied = unique(<<"acl_denied">>),
    ok = kafka_bridge_broker:create_topic(?config(broker, Config), Denied),
    kafka_bridge_test_lib:capture_logs(),
    start_bridge(Config, Allowed, [{<<"deny/#">>, Denied}], #{}),
    publish_range(1, 300, <<"ok/1">>),
    publish_range(301, 400, <<"deny/1">>),
    publish_range(401, 600, <<"ok/2">>),
    Metrics = settled(600, 60000),
    ct:log("metrics: ~p~nstatus: ~p", [Metrics, emqx_plugin_kafka_bridge:status()]),
    ?assertMatch(#{received := 600, delivered := 500, failed := 100, dropped := 0}, Metrics),
    ?assertEqual(#{delivered => 500, failed => 0}, topic_metrics(Allowed)),
    ?assertEqual(#{delivered => 0, failed => 100}, topic_metrics(Denied)),
    ?assertNotEqual(nomatch, binary:match(last_error(), <<"Topic authorization failed">>)),
    Lines = failure_lines(),
    ct:log("~p", [Lines]),
    ?assertNotEqual([], Lines),
    ?assert(length(Lines) =< 2),
    [?assertNotEqual(nomatch, binary:match(L, <<"Topic authorization failed">>)) || L <- Lines],
    kafka_bridge_test_lib:assert_once_in_order(consume(?config(broker, Config), Allowed, 500, 5000),
                                               lists:seq(1, 300) ++ lists:seq(401, 600)).

%% Records over a topic's max.message.bytes: Kafka answers
%% MESSAGE_TOO_LARGE, and each is counted as failed at once, with no retry,
%% while another topic keeps flowing.
record_too_large_fails_at_once(Config) ->
    Broker = ?config(broker, Config),
    [Normal] = new_topics(Config, [<<"normal">>]),
    Limited = unique(<<"limited">>),
    ok = kafka_bridge_broker:create_topic(Broker, Limited, 1, [{"max.message.bytes", "4096"}]),
    ok = grant_write(Config, [Limited]),
    kafka_bridge_test_lib:capture_logs(),
    start_bridge(Config, Normal, [{<<"big/#">>, Limited}], #{}),
    publish_range(1, 200, <<"n/1">>),
    publish_sized(201, 220, <<"big/1">>, 16384),
    publish_range(221, 400, <<"n/1">>),
    %% At once: well within librdkafka's first retry backoff of a
    %% retriable error, and nothing is retried.
    Metrics = settled(400, 15000),
    ct:log("metrics: ~p~nstatus: ~p", [Metrics, emqx_plugin_kafka_bridge:status()]),
    ?assertMatch(#{received := 400, delivered := 380, failed := 20, retried := 0, dropped := 0}, Metrics),
    ?assertEqual(#{delivered => 0, failed => 20}, topic_metrics(Limited)),
    ?assertEqual(#{delivered => 380, failed => 0}, topic_metrics(Normal)),
    ?assertNotEqual(nomatch, binary:match(last_error(), <<"too large">>)),
    ?assert(length(failure_lines()) =< 2),
    kafka_bridge_test_lib:assert_once_in_order(consume(Broker, Normal, 380, 5000),
                                               lists:seq(1, 200) ++ lists:seq(221, 400)),
    ?assertEqual([], consume(Broker, Limited, 0, 2000)).

%% A topic deleted while events flow to it, then created again: what was
%% sent while it was gone is either counted as failed or delivered to the
%% new topic, never both and never lost; every event after the re-creation
%% arrives once.
topic_deleted_and_recreated(Config) ->
    Broker = ?config(broker, Config),
    [Topic] = new_topics(Config, [<<"recreated">>]),
    start_bridge(Config, Topic, [], #{<<"topic.metadata.propagation.max.ms">> => <<"2000">>,
                                      <<"topic.metadata.refresh.interval.ms">> => <<"1000">>}),
    publish_range(1, 1000, <<"r/1">>),
    #{delivered := 1000} = settled(1000, 30000),
    ok = kafka_bridge_broker:admin(Broker, ["delete-topic", Topic]),
    publish_range(1001, 2000, <<"r/1">>),
    timer:sleep(3000),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    %% The ACL names the topic, not its incarnation: it still applies.
    timer:sleep(3000),
    publish_range(2001, 3000, <<"r/1">>),
    Metrics = settled(3000, 60000),
    ct:log("metrics: ~p~nstatus: ~p", [Metrics, emqx_plugin_kafka_bridge:status()]),
    #{delivered := Delivered, failed := Failed} = Metrics,
    ?assertMatch(#{received := 3000, dropped := 0}, Metrics),
    ?assertEqual(3000, Delivered + Failed),
    Read = ids(consume(Broker, Topic, Delivered - 1000, 5000)),
    ct:comment("~b failed while the topic was gone, ~b of those delivered to the new topic",
               [Failed, length(Read) - 1000]),
    %% What the new topic holds is exactly what was counted as delivered
    %% after the first 1 000: nothing from before, nothing twice.
    ?assertEqual(Delivered - 1000, length(Read)),
    ?assertEqual(length(Read), length(lists:usort(Read))),
    ?assertEqual([], [I || I <- Read, I =< 1000]),
    ?assertEqual([], ordsets:subtract(lists:seq(2001, 3000), lists:usort(Read))).

%% Partitions added while events flow: once librdkafka refreshes the
%% topic's metadata (topic.metadata.refresh.interval.ms, 5 min by default,
%% 1 s here), keys map over every partition (murmur2 of the key modulo the
%% new count), each key to one; nothing is lost or written twice.
partitions_added_mid_stream(Config) ->
    Broker = ?config(broker, Config),
    [Topic] = new_topics(Config, [<<"grown">>], 1),
    start_bridge(Config, Topic, [], #{<<"topic.metadata.refresh.interval.ms">> => <<"1000">>}),
    publish_range(1, 1000, <<"g/1">>),
    #{delivered := 1000} = settled(1000, 30000),
    ok = kafka_bridge_broker:admin(Broker, ["add-partitions", Topic, "4"]),
    timer:sleep(3000),
    publish_range(1001, 3000, <<"g/1">>),
    Metrics = settled(3000, 30000),
    ?assertMatch(#{delivered := 3000, failed := 0, dropped := 0}, Metrics),
    Records = consume(Broker, Topic, 3000, 5000),
    kafka_bridge_test_lib:assert_once_in_order(Records, lists:seq(1, 3000)),
    After = [{K, P} || R = #{key := K, partition := P} <- Records, lists:member(hd(ids([R])), lists:seq(1001, 3000))],
    Partitions = lists:usort([P || {_, P} <- After]),
    ct:log("partitions used after growing: ~w", [Partitions]),
    ?assertEqual([0, 1, 2, 3], Partitions),
    %% Each key to one partition after the refresh.
    ?assertEqual(length(lists:usort([K || {K, _} <- After])), length(lists:usort(After))).

%% A producer byte-rate quota on the bridge's client.id: the broker
%% throttles it, the bridge waits, nothing is lost or written twice.
byte_rate_quota_slows_loses_nothing(Config) ->
    Broker = ?config(broker, Config),
    [Topic] = new_topics(Config, [<<"throttled">>]),
    Rate = 64 * 1024,
    _ = kafka_bridge_broker:kafka_class(
          Broker, "kafka.admin.ConfigCommand",
          ["--bootstrap-server", kafka_bridge_broker:bootstrap(Broker, plaintext), "--alter",
           "--add-config", "producer_byte_rate=" ++ integer_to_list(Rate),
           "--entity-type", "clients", "--entity-name", "throttled-bridge"]),
    start_bridge(Config, Topic, [], #{<<"client.id">> => <<"throttled-bridge">>}),
    N = 400,
    Started = erlang:monotonic_time(millisecond),
    publish_sized(1, N, <<"q/1">>, 2048),
    Metrics = settled(N, 120000),
    Elapsed = erlang:monotonic_time(millisecond) - Started,
    ct:log("metrics: ~p~n~b ms", [Metrics, Elapsed]),
    ?assertMatch(#{delivered := N, failed := 0, dropped := 0}, Metrics),
    %% About 0.8 MB on the wire (base64 in JSON, lz4) at 64 KB/s: the quota
    %% held the bridge back for seconds (unthrottled it takes well under one).
    ?assert(Elapsed > 5000),
    kafka_bridge_test_lib:assert_once_in_order(consume(Broker, Topic, N, 5000), lists:seq(1, N)).

%% A principal that may write no topic at all has no IDEMPOTENT_WRITE
%% either (Kafka 2.8+ implies it from WRITE on any topic): the broker
%% refuses the idempotent producer an id, a fatal error. status() names the
%% ACL and the way out; events wait in the buffer instead of failing one
%% by one, and once WRITE is granted a fresh producer delivers them. Those
%% sent before the fatal error met TOPIC_AUTHORIZATION_FAILED and are
%% counted as failed: delivered + failed is every event.
no_idempotent_write_waits_for_the_acl(Config) ->
    no_idempotent_write(Config, "stranger", #{}).

%% The same in disk mode: events go to the spool while the producer is
%% fatal; every 10 s the bridge restarts (its supervisor starts it again)
%% and replays the spool with a fresh producer.
no_idempotent_write_spools_for_the_acl(Config) ->
    Dir = filename:join(?config(priv_dir, Config), binary_to_list(unique(<<"spool">>))),
    no_idempotent_write(Config, "outsider", #{<<"mode">> => <<"disk">>, <<"dir">> => list_to_binary(Dir)}).

%% User has no ACL yet: once it may write one topic, it may write
%% idempotently anywhere, so each case has a user of its own.
no_idempotent_write(Config, User, Buffer) ->
    Broker = ?config(broker, Config),
    Topic = unique(<<"stranger">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    start_bridge(Config, list_to_binary(User), Topic, [], #{}, Buffer),
    publish_range(1, 10, <<"s/1">>),
    Named = fun() -> binary:match(last_error(), <<"the principal may not write idempotently">>) =/= nomatch end,
    kafka_bridge_test_lib:wait_until(Named, 20000) =:= ok orelse ct:fail({not_named, emqx_plugin_kafka_bridge:status()}),
    ?assertMatch(#{state := disconnected}, emqx_plugin_kafka_bridge:status()),
    publish_range(11, 100, <<"s/1">>),
    timer:sleep(1000),
    Held = emqx_plugin_kafka_bridge:metrics(),
    ct:log("while fatal: ~p~nstatus: ~p", [Held, emqx_plugin_kafka_bridge:status()]),
    ?assertMatch(#{received := 100, delivered := 0, dropped := 0}, Held),
    %% Everything after the fatal error waits.
    ?assert(maps:get(failed, Held) =< 10),
    ok = grant_write(Config, User, [Topic]),
    %% Nothing arrives for up to 10 s (the next fresh producer), then all.
    Read = ids(consume(Broker, Topic, 90, 30000)),
    Metrics = emqx_plugin_kafka_bridge:metrics(),
    ct:log("after the grant: ~p~nstatus: ~p", [Metrics, emqx_plugin_kafka_bridge:status()]),
    ?assertEqual(length(Read), length(lists:usort(Read))),
    ?assertEqual([], ordsets:subtract(lists:seq(11, 100), lists:usort(Read))),
    ?assertMatch(#{state := connected}, emqx_plugin_kafka_bridge:status()),
    %% Memory mode's counters span the wait; a restart (disk mode) starts
    %% its own.
    maps:get(<<"mode">>, Buffer, <<"memory">>) =:= <<"memory">> andalso
        ?assertMatch(#{delivered := D, failed := F} when D + F =:= 100 andalso D =:= length(Read), Metrics).
