%% @doc Renders the bridge's metrics as Prometheus text exposition format.
-module(emqx_plugin_kafka_bridge_prometheus).

-export([render/2]).

-define(PREFIX, "emqx_kafka_bridge_").

counters() ->
    [{received, "Events handed to the bridge by EMQX hooks."},
     {filtered_out, "Events not bridged because of filters."},
     {enqueued, "Events accepted into the bridge's queue."},
     {dropped_queue_full, "Events dropped because the buffer was full."},
     {dropped_on_stop, "Events still undelivered when the bridge stopped."},
     {dropped_invalid, "Hook arguments the bridge could not decode."},
     {dropped_nif_unavailable, "Hook calls that never reached the NIF (library not loaded)."},
     {delivered, "Records acknowledged by Kafka."},
     {failed, "Records Kafka refused or that failed permanently."},
     {retried, "Produce request retries by librdkafka."},
     {requeued, "Records handed back to the queue when the producer was replaced."},
     {spooled, "Records written to the disk spool (synced as buffer.fsync says)."},
     {dropped_spool_full, "Events dropped because the spool reached buffer.max_disk_bytes."},
     {dropped_spool_error, "Events lost to a spool write error."},
     {spool_corrupt_records, "Torn or corrupted spool records skipped on replay."},
     {token_refreshes, "SASL/OAUTHBEARER tokens fetched and given to librdkafka."},
     {token_refresh_failures, "SASL/OAUTHBEARER token fetches that failed."}].

gauges() ->
    [{queue_len, "Records waiting in the bridge's queue."},
     {queue_bytes, "Bytes held in the queue and inside librdkafka."},
     {inflight, "Records handed to librdkafka and not yet acknowledged."},
     {spool_bytes, "Bytes the disk spool holds."},
     {spool_segments, "Segment files in the disk spool."},
     {spool_backlog_bytes, "Spool bytes not yet acknowledged by Kafka."}].

-spec render(map(), map()) -> binary().
render(Metrics, Status) when map_size(Metrics) =:= 0 ->
    iolist_to_binary(up_line(Status));
render(Metrics, Status) ->
    Counters = [metric(Name ++ "_total", counter, Help, [{"", maps:get(Key, Metrics, 0)}])
                || {Key, Help} <- counters(), Name <- [atom_to_list(Key)]],
    Gauges = [metric(atom_to_list(Key), gauge, Help, [{"", maps:get(Key, Metrics, 0)}])
              || {Key, Help} <- gauges()],
    Latency = maps:get(delivery_latency_ms, Metrics, #{}),
    Quantiles = metric("delivery_latency_ms", gauge,
                       "Enqueue-to-acknowledgement latency (bucket upper bound).",
                       [{"{quantile=\"0.5\"}", maps:get(p50, Latency, 0)},
                        {"{quantile=\"0.99\"}", maps:get(p99, Latency, 0)}]),
    Topics = maps:to_list(maps:get(topics, Metrics, #{})),
    PerTopic = [metric("topic_" ++ atom_to_list(Key) ++ "_total", counter,
                       "Records per Kafka topic, by outcome.",
                       [{["{topic=\"", escape(Topic), "\"}"], maps:get(Key, Row, 0)}
                        || {Topic, Row} <- Topics])
                || Key <- [delivered, failed], Topics =/= []],
    Other = maps:get(other_topics, Metrics, #{}),
    OtherTopics = [metric("other_topics_" ++ atom_to_list(Key) ++ "_total", counter,
                          "Records to topics beyond the 100 reported one by one, by outcome.",
                          [{"", maps:get(Key, Other, 0)}])
                   || Key <- [delivered, failed]],
    iolist_to_binary([up_line(Status), Counters, Gauges, Quantiles, PerTopic, OtherTopics]).

up_line(Status) ->
    Connected = case maps:get(state, Status, stopped) of connected -> 1; _ -> 0 end,
    metric("connected", gauge, "1 when a Kafka broker is reachable.", [{"", Connected}]).

metric(Name, Type, Help, Samples) ->
    [["# HELP ", ?PREFIX, Name, " ", Help, "\n"],
     ["# TYPE ", ?PREFIX, Name, " ", atom_to_list(Type), "\n"],
     [[?PREFIX, Name, Labels, " ", integer_to_list(Value), "\n"] || {Labels, Value} <- Samples]].

escape(Bin) ->
    binary:replace(binary:replace(Bin, <<"\\">>, <<"\\\\">>, [global]), <<"\"">>, <<"\\\"">>, [global]).
