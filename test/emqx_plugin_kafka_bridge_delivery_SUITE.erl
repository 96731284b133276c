%% @doc Delivery guarantees against a real broker: outages with a
%% broker killed and restarted, overflow accounting, starting without Kafka,
%% missing topics, clean stop, thread hygiene, metrics and secrets.
-module(emqx_plugin_kafka_bridge_delivery_SUITE).

-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(kafka_bridge_test_lib, [message/3, consume/4, ids/1, unique/1, publish_range/3,
                                metric/1, publish/1]).

all() ->
    [outage_loses_nothing, idempotent_across_broker_restarts, too_small_budget_counts_every_drop, drop_oldest_keeps_newest,
     drop_oldest_keeps_newest_with_a_small_budget,
     a_consumer_reads_all_the_topic_holds, starts_and_buffers_without_kafka, missing_topic_created_when_asked,
     missing_topic_fails_counted_and_logged_once, stop_flushes_queue,
     stop_counts_undelivered_after_timeout, start_stop_twenty_times_leaks_no_threads,
     metrics_and_prometheus_text, librdkafka_rejects_property, secrets_never_shown].

init_per_testcase(_Case, Config) ->
    Dir = filename:join(?config(priv_dir, Config), unique(<<"broker">>)),
    [{dir, Dir} | Config].

end_per_testcase(_Case, _Config) ->
    kafka_bridge_test_lib:stop_bridge(),
    emqx_hooks:reset(),
    _ = logger:remove_handler(kafka_bridge_capture),
    kafka_bridge_broker:stop_all().

%% Brokers are started inside test cases; remember them for cleanup.
broker(Dir) ->
    broker(Dir, kafka_bridge_test_lib:free_port()).

start(Broker, Topic, Overrides) ->
    Config = kafka_bridge_test_lib:config(
               Broker, kafka_bridge_test_lib:deep_merge(
                         #{<<"events">> => #{<<"message_publish">> => #{<<"topic">> => Topic}}}, Overrides)),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Config).

%% queue_len and inflight are read a moment apart while the producer moves
%% records from one to the other; their sum settles at what the bridge holds.
wait_held(N) ->
    kafka_bridge_test_lib:wait_until(
      fun() ->
              #{queue_len := Queued, inflight := Inflight} = emqx_plugin_kafka_bridge:metrics(),
              Queued + Inflight =:= N
      end, 5000).

%% Polls queue_bytes while Fun runs, returns the largest value seen.
max_queue_bytes_during(Fun) ->
    Self = self(),
    Sampler = spawn_link(fun() -> sample_loop(Self, 0) end),
    Fun(),
    Sampler ! {stop, Self},
    receive {max_queue_bytes, Max} -> Max end.

sample_loop(Parent, Max) ->
    receive {stop, Parent} -> Parent ! {max_queue_bytes, Max}
    after 20 -> sample_loop(Parent, max(Max, maps:get(queue_bytes, emqx_plugin_kafka_bridge:metrics(), 0)))
    end.

%%--------------------------------------------------------------------

%% 50 000 events at full speed, the broker killed (-9) for 10 s in the
%% middle: every event arrives, counted by id.
outage_loses_nothing(Config) ->
    Broker = broker(?config(dir, Config)),
    Topic = unique(<<"outage">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    MaxBytes = 64 * 1024 * 1024,
    start(Broker, Topic, #{<<"buffer">> => #{<<"max_bytes">> => MaxBytes}}),
    N = 50000,
    MaxSeen = max_queue_bytes_during(
                fun() ->
                        publish_range(1, N div 2, <<"out/age">>),
                        kafka_bridge_broker:kill(Broker),
                        Killed = erlang:monotonic_time(millisecond),
                        publish_range(N div 2 + 1, N, <<"out/age">>),
                        ct:log("during outage: ~p", [emqx_plugin_kafka_bridge:status()]),
                        timer:sleep(max(0, 10000 - (erlang:monotonic_time(millisecond) - Killed))),
                        put(broker, kafka_bridge_broker:restart(Broker)),
                        kafka_bridge_test_lib:wait_for_delivered(N, 120000)
                end),
    Metrics = emqx_plugin_kafka_bridge:metrics(),
    ct:log("metrics: ~p~nmax queue_bytes: ~p", [Metrics, MaxSeen]),
    ?assertMatch(#{received := N, enqueued := N, delivered := N, failed := 0, dropped := 0}, Metrics),
    ?assert(MaxSeen =< MaxBytes),
    %% Idempotent by default: what was in flight at the kill is retried
    %% after the restart, and the broker keeps one copy.
    kafka_bridge_test_lib:assert_once_in_order(consume(get(broker), Topic, N, 10000), lists:seq(1, N)).

%% Idempotent by default: the broker wrote every batch with the bridge's
%% producer id and sequence numbers, which it uses to discard a retried
%% batch it already holds (with enable.idempotence = false, the default
%% before the tests ran on Apache Kafka, the id is -1). Publishing never
%% pauses while the broker stalls twice for longer than request.timeout.ms
%% (SIGSTOP, then SIGCONT) and is killed (-9) and restarted once: every id
%% arrives exactly once, and each partition holds its ids in the order they
%% were published.
idempotent_across_broker_restarts(Config) ->
    Broker = broker(?config(dir, Config)),
    Topic = unique(<<"idempotent">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    %% Room for the whole run: after a restart librdkafka may take up to
    %% reconnect.backoff.max.ms (10 s) to reconnect.
    start(Broker, Topic, #{<<"kafka">> => #{<<"properties">> => #{<<"request.timeout.ms">> => <<"1000">>}},
                           <<"buffer">> => #{<<"max_bytes">> => 256 * 1024 * 1024, <<"max_messages">> => 1000000}}),
    Publisher = spawn_link(fun() -> publish_until_stopped(1) end),
    Stall = fun(B) ->
                    timer:sleep(1500),
                    kafka_bridge_broker:pause(B),
                    timer:sleep(3000),
                    kafka_bridge_broker:resume(B)
            end,
    Stall(Stall(Broker)),
    timer:sleep(1500),
    put(broker, kafka_bridge_broker:restart(kafka_bridge_broker:kill(Broker))),
    timer:sleep(1500),
    Publisher ! {stop, self()},
    N = receive {published, Last} -> Last end,
    Metrics = kafka_bridge_test_lib:wait_for_delivered(N, 120000),
    ct:log("metrics: ~p", [Metrics]),
    ?assertMatch(#{received := N, delivered := N, failed := 0, dropped := 0}, Metrics),
    kafka_bridge_test_lib:assert_once_in_order(consume(get(broker), Topic, N, 10000), lists:seq(1, N)),
    Batches = kafka_bridge_broker:log_batches(get(broker), Topic),
    ct:log("~b batches, producer ids ~w", [length(Batches), lists:usort([P || {_, P, _, _} <- Batches])]),
    ?assertNotEqual([], Batches),
    ?assertEqual([], [B || B = {_, ProducerId, _, _} <- Batches, ProducerId < 0]).

%% Publishes ids from First, 100 every 20 ms (about 4 000/s), until told to stop; answers with the
%% last id published.
publish_until_stopped(First) ->
    Last = First + 99,
    publish_range(First, Last, <<"idem/potent">>),
    receive {stop, From} -> From ! {published, Last}
    after 20 -> publish_until_stopped(Last + 1)
    end.

%% A budget far too small for the outage: what did not arrive is exactly
%% what was counted as dropped.
too_small_budget_counts_every_drop(Config) ->
    Broker = broker(?config(dir, Config)),
    Topic = unique(<<"small">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    start(Broker, Topic, #{<<"buffer">> => #{<<"max_bytes">> => 256 * 1024, <<"max_messages">> => 100000}}),
    N = 20000,
    publish_range(1, 1000, <<"s/1">>),
    kafka_bridge_test_lib:wait_for_delivered(1000, 30000),
    kafka_bridge_broker:kill(Broker),
    publish_range(1001, N, <<"s/1">>),
    Dropped = metric(dropped_queue_full),
    ?assert(Dropped > 0),
    put(broker, kafka_bridge_broker:restart(Broker)),
    Metrics = kafka_bridge_test_lib:wait_for_delivered(N - Dropped, 120000),
    ct:log("metrics: ~p", [Metrics]),
    ?assertMatch(#{received := N, failed := 0, queue_len := 0}, Metrics),
    ?assertEqual(N - Dropped, maps:get(delivered, Metrics)),
    %% Each accepted id arrives once (idempotence): N - Dropped records.
    Read = ids(consume(get(broker), Topic, N - Dropped, 10000)),
    ?assertEqual(N - Dropped, length(lists:usort(Read))),
    ?assertEqual(N - Dropped, length(Read)).

%% No broker while 25 events come in with room for 10 (queue plus
%% librdkafka): 15 drops are counted, and drop_oldest keeps the newest of
%% those still in the bridge's own queue.
drop_oldest_keeps_newest(Config) ->
    Port = kafka_bridge_test_lib:free_port(),
    Topic = unique(<<"oldest">>),
    Config1 = #{<<"kafka">> => #{<<"bootstrap_servers">> => iolist_to_binary(["127.0.0.1:", integer_to_list(Port)])},
                <<"events">> => #{<<"message_publish">> => #{<<"topic">> => Topic}},
                <<"buffer">> => #{<<"max_messages">> => 10, <<"overflow">> => <<"drop_oldest">>}},
    {ok, _} = kafka_bridge_test_lib:start_bridge(Config1),
    publish_range(1, 25, <<"d/o">>),
    Metrics = emqx_plugin_kafka_bridge:metrics(),
    ct:log("~p", [Metrics]),
    ?assertMatch(#{received := 25, dropped_queue_full := 15}, Metrics),
    ok = wait_held(10),
    Broker = broker(?config(dir, Config), Port),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    kafka_bridge_test_lib:wait_for_delivered(10, 60000),
    Arrived = lists:usort(ids(consume(Broker, Topic, 10, 5000))),
    ct:log("arrived: ~w", [Arrived]),
    ?assertEqual(10, length(Arrived)),
    ?assertEqual([22, 23, 24, 25], lists:nthtail(6, Arrived)).

%% 20 000 events with room for 500 and no broker: drop_oldest keeps the
%% newest. The producer's own batch and librdkafka once took the whole
%% budget, where eviction cannot reach, so the oldest 500 survived; now
%% they hold at most a quarter of it.
drop_oldest_keeps_newest_with_a_small_budget(Config) ->
    Port = kafka_bridge_test_lib:free_port(),
    Topic = unique(<<"newest">>),
    N = 20000,
    Config1 = #{<<"kafka">> => #{<<"bootstrap_servers">> => iolist_to_binary(["127.0.0.1:", integer_to_list(Port)])},
                <<"events">> => #{<<"message_publish">> => #{<<"topic">> => Topic}},
                <<"buffer">> => #{<<"max_messages">> => 500, <<"overflow">> => <<"drop_oldest">>}},
    {ok, _} = kafka_bridge_test_lib:start_bridge(Config1),
    publish_range(1, N, <<"d/n">>),
    Broker = broker(?config(dir, Config), Port),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    #{dropped_queue_full := Dropped} = kafka_bridge_test_lib:wait_for_delivered(500, 60000),
    Arrived = lists:usort(ids(consume(Broker, Topic, N - Dropped, 5000))),
    ct:log("~b arrived, ~b dropped; oldest arrived ~w", [length(Arrived), Dropped, lists:sublist(Arrived, 10)]),
    ?assertEqual(N, length(Arrived) + Dropped),
    ?assert(length(Arrived) =< 500),
    ?assertEqual([], ordsets:subtract(lists:seq(N - 374, N), Arrived)).

%% The bridge starts with no broker, buffers, reports its state, and
%% delivers everything once the broker appears.
starts_and_buffers_without_kafka(Config) ->
    Port = kafka_bridge_test_lib:free_port(),
    Topic = unique(<<"late">>),
    Config1 = #{<<"kafka">> => #{<<"bootstrap_servers">> => iolist_to_binary(["127.0.0.1:", integer_to_list(Port)])},
                <<"events">> => #{<<"message_publish">> => #{<<"topic">> => Topic}}},
    kafka_bridge_test_lib:capture_logs(),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Config1),
    %% connecting, or already disconnected when the refusal came at once.
    ?assertNotMatch(#{state := connected}, emqx_plugin_kafka_bridge:status()),
    publish_range(1, 500, <<"l/1">>),
    ok = kafka_bridge_test_lib:wait_until(
           fun() -> maps:get(state, emqx_plugin_kafka_bridge:status()) =:= disconnected end, 15000),
    #{last_error := LastError} = emqx_plugin_kafka_bridge:status(),
    ct:log("status while down: ~p", [emqx_plugin_kafka_bridge:status()]),
    ?assertNotEqual(<<>>, LastError),
    ok = wait_held(500),
    timer:sleep(3000),
    Logs = kafka_bridge_test_lib:captured_logs(),
    ct:log("~p log lines while down: ~p", [length(Logs), Logs]),
    %% Rate-limited: a handful of lines for the outage, not one per message.
    ?assert(length(Logs) < 20),
    Broker = broker(?config(dir, Config), Port),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    ?assertMatch(#{delivered := 500, failed := 0}, kafka_bridge_test_lib:wait_for_delivered(500, 60000)),
    ?assertMatch(#{state := connected}, emqx_plugin_kafka_bridge:status()),
    ?assertEqual(lists:seq(1, 500), lists:usort(ids(consume(Broker, Topic, 500, 5000)))).

broker(Dir, Port) ->
    Broker = kafka_bridge_broker:start(Dir, #{port => Port}),
    put(broker, Broker),
    Broker.

missing_topic_created_when_asked(Config) ->
    Broker = broker(?config(dir, Config)),
    Topic = unique(<<"created">>),
    start(Broker, Topic, #{<<"kafka">> => #{<<"create_topics">> => true, <<"partitions">> => 2}}),
    publish_range(1, 100, <<"c/1">>),
    ?assertMatch(#{delivered := 100, failed := 0}, kafka_bridge_test_lib:wait_for_delivered(100, 30000)),
    Records = consume(Broker, Topic, 100, 5000),
    ?assertEqual(lists:seq(1, 100), lists:usort(ids(Records))),
    ?assertEqual([0, 1], lists:usort([P || #{partition := P} <- Records])).

missing_topic_fails_counted_and_logged_once(Config) ->
    Broker = broker(?config(dir, Config)),
    Topic = unique(<<"missing">>),
    kafka_bridge_test_lib:capture_logs(),
    %% librdkafka gives up on an unknown topic after this (default 30 s).
    start(Broker, Topic, #{<<"kafka">> => #{<<"properties">> => #{<<"topic.metadata.propagation.max.ms">> => <<"3000">>}}}),
    publish_range(1, 50, <<"m/1">>),
    Metrics = kafka_bridge_test_lib:wait_for_delivered(50, 90000),
    ct:log("metrics: ~p", [Metrics]),
    ?assertMatch(#{failed := 50, delivered := 0}, Metrics),
    ?assertEqual(#{delivered => 0, failed => 50}, maps:get(Topic, maps:get(topics, Metrics))),
    Mentions = [L || L <- kafka_bridge_test_lib:captured_logs(), binary:match(L, Topic) =/= nomatch],
    ct:log("log lines: ~p", [Mentions]),
    ?assertEqual(1, length(Mentions)),
    ?assertNotEqual(nomatch, binary:match(maps:get(last_error, emqx_plugin_kafka_bridge:status()), Topic)).

stop_flushes_queue(Config) ->
    Broker = broker(?config(dir, Config)),
    Topic = unique(<<"flush">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    start(Broker, Topic, #{}),
    publish_range(1, 20000, <<"f/1">>),
    ok = kafka_bridge_test_lib:stop_bridge(),
    Metrics = emqx_plugin_kafka_bridge:metrics(),
    ?assertMatch(#{delivered := 20000, dropped_on_stop := 0, queue_len := 0, inflight := 0}, Metrics),
    ?assertEqual(lists:seq(1, 20000), lists:usort(ids(consume(Broker, Topic, 20000, 5000)))).

%% The suites' reader goes on to the end of every partition after it has
%% what a test expects, so a duplicate or a stray record fails the count.
a_consumer_reads_all_the_topic_holds(Config) ->
    Broker = broker(?config(dir, Config)),
    Topic = unique(<<"more">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    start(Broker, Topic, #{}),
    publish_range(1, 30, <<"m/1">>),
    #{delivered := 30} = kafka_bridge_test_lib:wait_for_delivered(30, 10000),
    ?assertEqual(lists:seq(1, 30), lists:sort(ids(consume(Broker, Topic, 20, 5000)))).

stop_counts_undelivered_after_timeout(Config) ->
    Broker = broker(?config(dir, Config)),
    Topic = unique(<<"undelivered">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    start(Broker, Topic, #{<<"buffer">> => #{<<"flush_timeout">> => <<"1s">>}}),
    publish_range(1, 10, <<"u/1">>),
    kafka_bridge_test_lib:wait_for_delivered(10, 10000),
    kafka_bridge_broker:kill(Broker),
    publish_range(11, 310, <<"u/1">>),
    kafka_bridge_test_lib:capture_logs(),
    {Micros, ok} = timer:tc(fun kafka_bridge_test_lib:stop_bridge/0),
    ct:log("stop took ~b ms", [Micros div 1000]),
    ?assert(Micros < 5000000),
    ?assertMatch(#{delivered := 10, dropped_on_stop := 300, queue_len := 0, inflight := 0},
                 emqx_plugin_kafka_bridge:metrics()),
    Logs = kafka_bridge_test_lib:captured_logs(),
    ?assert(lists:any(fun(L) -> binary:match(L, <<"300 events undelivered">>) =/= nomatch end, Logs)),
    %% Hooks were removed before the flush: later events never reach the NIF.
    ?assertEqual([], emqx_hooks:lookup('message.publish')).

start_stop_twenty_times_leaks_no_threads(Config) ->
    Broker = broker(?config(dir, Config)),
    Topic = unique(<<"cycle">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    %% One warm-up cycle, so lazily started VM threads are not counted.
    start(Broker, Topic, #{}),
    ok = kafka_bridge_test_lib:stop_bridge(),
    Before = kafka_bridge_test_lib:thread_count(),
    lists:foreach(fun(I) ->
                          start(Broker, Topic, #{}),
                          publish_range(I * 10 + 1, I * 10 + 10, <<"cy/1">>),
                          ok = kafka_bridge_test_lib:stop_bridge(),
                          ?assertMatch(#{delivered := 10, dropped := 0}, emqx_plugin_kafka_bridge:metrics())
                  end, lists:seq(1, 20)),
    After = kafka_bridge_test_lib:thread_count(),
    ct:log("threads before ~b, after ~b", [Before, After]),
    ?assertEqual(Before, After),
    ?assertEqual(lists:seq(11, 210), lists:usort(ids(consume(Broker, Topic, 200, 5000)))).

metrics_and_prometheus_text(Config) ->
    Broker = broker(?config(dir, Config)),
    Topic = unique(<<"metrics">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    %% librdkafka holds each batch 200 ms, so every delivery takes at least
    %% that long, and none longer than the whole run.
    start(Broker, Topic, #{<<"events">> => #{<<"message_publish">> => #{<<"filters">> => [<<"keep/#">>]}},
                           <<"kafka">> => #{<<"properties">> => #{<<"linger.ms">> => <<"200">>}}}),
    T0 = erlang:monotonic_time(millisecond),
    publish_range(1, 30, <<"keep/1">>),
    publish_range(31, 40, <<"skip/1">>),
    M = kafka_bridge_test_lib:wait_for_delivered(30, 10000),
    Elapsed = erlang:monotonic_time(millisecond) - T0,
    ?assertMatch(#{received := 40, filtered_out := 10, enqueued := 30, delivered := 30, failed := 0,
                   dropped_queue_full := 0, dropped_on_stop := 0, retried := 0, queue_len := 0,
                   queue_bytes := 0, inflight := 0}, M),
    #{delivery_latency_ms := #{p50 := P50, p99 := P99}} = M,
    ct:log("latency p50 ~b ms, p99 ~b ms, run ~b ms", [P50, P99, Elapsed]),
    %% Quantiles are bucket upper bounds: 151-200 ms reads 200.
    ?assert(P50 >= 200),
    ?assert(P99 =< hd([B || B <- [200, 300, 500, 750, 1000, 2000, 5000, 10000, 30000], B >= Elapsed])),
    Text = emqx_plugin_kafka_bridge:metrics_text(),
    ct:log("~s", [Text]),
    [?assertNotEqual(nomatch, binary:match(Text, Line))
     || Line <- [<<"emqx_kafka_bridge_received_total 40\n">>, <<"emqx_kafka_bridge_delivered_total 30\n">>,
                 <<"emqx_kafka_bridge_filtered_out_total 10\n">>, <<"emqx_kafka_bridge_connected 1\n">>,
                 <<"# TYPE emqx_kafka_bridge_queue_len gauge\n">>,
                 <<"emqx_kafka_bridge_topic_delivered_total{topic=\"", Topic/binary, "\"} 30\n">>]].

librdkafka_rejects_property(Config) ->
    Broker = broker(?config(dir, Config)),
    Bad = kafka_bridge_test_lib:config(Broker, #{<<"kafka">> => #{<<"properties">> => #{<<"linger.ms">> => <<"soon">>}}}),
    {error, Reason} = kafka_bridge_test_lib:start_bridge(Bad),
    Text = iolist_to_binary(io_lib:format("~p", [Reason])),
    ct:log("~s", [Text]),
    ?assertNotEqual(nomatch, binary:match(Text, <<"kafka.properties.linger.ms">>)),
    ?assertNotEqual(nomatch, binary:match(Text, <<"Invalid value">>)).

secrets_never_shown(Config) ->
    Broker = broker(?config(dir, Config)),
    Secret = <<"hunter2-very-secret">>,
    kafka_bridge_test_lib:capture_logs(),
    %% sasl.password is a librdkafka property; the invalid acks makes
    %% librdkafka reject the config.
    Bad = kafka_bridge_test_lib:config(Broker, #{<<"kafka">> => #{<<"properties">> =>
              #{<<"sasl.password">> => Secret, <<"ssl.key.password">> => Secret,
                <<"acks">> => <<"most">>}}}),
    {error, Reason} = kafka_bridge_test_lib:start_bridge(Bad),
    Text = iolist_to_binary(io_lib:format("~p", [Reason])),
    ct:log("~s", [Text]),
    ?assertEqual(nomatch, binary:match(Text, Secret)),
    %% A valid config with secrets: nothing in status, metrics or logs.
    Topic = unique(<<"secret">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    start(Broker, Topic, #{<<"kafka">> => #{<<"properties">> => #{<<"sasl.password">> => Secret}}}),
    publish_range(1, 5, <<"s/1">>),
    kafka_bridge_test_lib:wait_for_delivered(5, 10000),
    Everything = iolist_to_binary(io_lib:format("~p ~p ~s ~p", [emqx_plugin_kafka_bridge:status(),
                                                                emqx_plugin_kafka_bridge:metrics(),
                                                                emqx_plugin_kafka_bridge:metrics_text(),
                                                                kafka_bridge_test_lib:captured_logs()])),
    ?assertEqual(nomatch, binary:match(Everything, Secret)).
