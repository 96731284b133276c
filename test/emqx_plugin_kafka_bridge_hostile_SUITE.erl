%% @doc Input no EMQX parser produces but another plugin or hook can: terms
%% nested a million deep in every field, improper lists, random terms, the
%% longest legal topic filters, and a NIF module swapped away under a
%% running bridge. The VM must survive each, and every hook call must end
%% in exactly one counter.
-module(emqx_plugin_kafka_bridge_hostile_SUITE).

-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(kafka_bridge_test_lib, [message/3, message/4, client_info/1, conn_info/1, consume/3, consume/4, publish/1,
                                unique/1]).

-define(B, emqx_plugin_kafka_bridge).
-define(EVENTS, [<<"client_connected">>, <<"client_disconnected">>, <<"session_subscribed">>,
                 <<"session_unsubscribed">>, <<"message_publish">>, <<"message_delivered">>,
                 <<"message_acked">>, <<"message_dropped">>]).
-define(DEPTHS, [10, 1000, 10000, 1000000]).

all() ->
    [deep_terms_in_every_field, wide_terms_hold_no_scheduler, improper_lists_are_decoded, random_terms_keep_the_books,
     templates_over_hostile_terms,
     longest_filters_route_and_reconfigure, nif_module_reload_and_absence, producer_panic_restarts_the_bridge].

init_per_suite(Config) ->
    [{broker, kafka_bridge_broker:start(?config(priv_dir, Config))} | Config].

end_per_suite(Config) ->
    kafka_bridge_broker:stop(?config(broker, Config)).

init_per_testcase(_Case, Config) ->
    Broker = ?config(broker, Config),
    Topic = unique(<<"hostile">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic),
    [{topic, Topic} | Config].

end_per_testcase(_Case, _Config) ->
    kafka_bridge_test_lib:stop_bridge(),
    emqx_hooks:reset().

%% Every event into the case's topic, user properties copied to headers.
start_all_events(Config, Overrides) ->
    Events = maps:from_list([{E, #{<<"enable">> => true, <<"topic">> => ?config(topic, Config)}}
                             || E <- ?EVENTS]),
    BridgeConfig = kafka_bridge_test_lib:config(
                     ?config(broker, Config),
                     maps:merge(#{<<"events">> => Events,
                                  <<"headers">> => #{<<"user_properties">> => true}}, Overrides)),
    {ok, _} = kafka_bridge_test_lib:start_bridge(BridgeConfig),
    ?B:bridge().

%% `received + dropped_nif_unavailable' hook calls, each in exactly one outcome.
assert_books_balance() ->
    M = ?B:metrics(),
    #{received := Received, filtered_out := Filtered, enqueued := Enqueued, dropped := Dropped} = M,
    Parts = [dropped_queue_full, dropped_on_stop, dropped_invalid, dropped_spool_full,
             dropped_spool_error, dropped_nif_unavailable],
    ?assertEqual(Dropped, lists:sum([maps:get(P, M, 0) || P <- Parts])),
    ?assertEqual(Received + maps:get(dropped_nif_unavailable, M, 0), Filtered + Enqueued + Dropped),
    M.

%%--------------------------------------------------------------------
%% Terms
%%--------------------------------------------------------------------

deep(Depth, list) -> nest(Depth, fun(T) -> [T] end);
deep(Depth, tuple) -> nest(Depth, fun(T) -> {T} end);
deep(Depth, map) -> nest(Depth, fun(T) -> #{a => T} end);
deep(Depth, pairs) -> nest(Depth, fun(T) -> [{<<"k">>, T}] end).

nest(0, _Wrap) -> leaf;
nest(N, Wrap) -> Wrap(nest(N - 1, Wrap)).

%% Each hook's arguments, EMQX-shaped, with Field replaced by Value.
%% {Hook callback, Args, Field name} for every field the encoder reads.
probes(Value) ->
    Ci = client_info(<<"c1">>),
    Conn = conn_info(<<"c1">>),
    Msg = message(<<"c1">>, <<"t/1">>, <<"p">>),
    Headers = element(6, Msg),
    WithHeader = fun(K, V) -> setelement(6, Msg, Headers#{K => V}) end,
    CiFields = [{K, Ci#{K => Value}} || K <- [clientid, username, peerhost, sockport, is_bridge]],
    ConnFields = [{K, Conn#{K => Value}}
                  || K <- [proto_name, proto_ver, keepalive, clean_start, expiry_interval, connected_at,
                           disconnected_at]],
    MsgFields = [{qos, setelement(3, Msg, Value)}, {from, setelement(4, Msg, Value)},
                 {flags, setelement(5, Msg, #{retain => Value})},
                 {'headers.username', WithHeader(username, Value)},
                 {'headers.peerhost', WithHeader(peerhost, Value)},
                 {'headers.properties', WithHeader(properties, #{'Content-Type' => Value})},
                 {'headers.user_property', WithHeader(properties, #{'User-Property' => [{<<"k">>, Value}]})},
                 {timestamp, setelement(9, Msg, Value)}],
    [{on_client_connected, [C, Conn], {clientinfo, K}} || {K, C} <- CiFields]
    ++ [{on_client_connected, [Ci, C], {conninfo, K}} || {K, C} <- ConnFields]
    ++ [{on_client_disconnected, [C, normal, Conn], {clientinfo, K}} || {K, C} <- CiFields]
    ++ [{on_client_disconnected, [Ci, Value, Conn], reason}]
    ++ [{on_client_disconnected, [Ci, normal, C], {conninfo, K}} || {K, C} <- ConnFields]
    ++ [{on_session_subscribed, [C, <<"t/#">>, #{qos => 1}], {clientinfo, K}} || {K, C} <- CiFields]
    ++ [{on_session_subscribed, [Ci, <<"t/#">>, #{qos => Value}], subopts_qos},
        {on_session_unsubscribed, [Ci, <<"t/#">>, Value], subopts}]
    ++ [{on_message_publish, [M], {message, K}} || {K, M} <- MsgFields]
    ++ [{on_message_delivered, [C, Msg], {clientinfo, K}} || {K, C} <- CiFields]
    ++ [{on_message_acked, [Ci, M], {message, K}} || {K, M} <- MsgFields]
    ++ [{on_message_dropped, [M, #{node => node()}, no_subscribers], {message, K}} || {K, M} <- MsgFields]
    ++ [{on_message_dropped, [Msg, #{node => node()}, Value], reason}].

%% Fields the emqx format does not write for that hook, or reads only
%% when they have the expected type (a timestamp that is not an integer is
%% replaced by the time of the call, a retain flag that is not a boolean is
%% false, sub opts that are not a map have no qos).
not_read(on_client_connected, {conninfo, disconnected_at}) -> true;
not_read(on_client_disconnected, {conninfo, _}) -> true;
not_read(on_message_delivered, {clientinfo, K}) -> not lists:member(K, [clientid, username]);
not_read(Callback, {clientinfo, K}) when Callback =/= on_client_connected ->
    lists:member(K, [sockport, is_bridge]);
not_read(on_session_unsubscribed, subopts) -> true;
not_read(_, {message, K}) -> lists:member(K, [timestamp, flags]);
not_read(_, _) -> false.

%% Calls one hook callback, checks it returned what EMQX expects, and
%% returns the counters it moved.
probe(Bridge, {Callback, Args, _Field}) ->
    Before = ?B:metrics(),
    Result = apply(?B, Callback, Args ++ [Bridge]),
    case Callback of
        on_message_publish -> ?assertEqual({ok, hd(Args)}, Result);
        on_message_delivered -> ?assertEqual({ok, lists:last(Args)}, Result);
        _ -> ?assertEqual(ok, Result)
    end,
    After = ?B:metrics(),
    [K || K <- [received, enqueued, filtered_out, dropped_invalid],
          maps:get(K, After) - maps:get(K, Before) =/= 0].

%% A term a million levels deep in any field the encoder reads: the VM
%% lives (a walk per level once overflowed the scheduler's stack and took
%% it down with SIGSEGV) and the event is counted as invalid; a term ten
%% levels deep is bridged.
deep_terms_in_every_field(Config) ->
    Bridge = start_all_events(Config, #{}),
    Shallow = lists:append([[{Kind, probe(Bridge, P)} || P <- probes(deep(10, Kind))]
                            || Kind <- [list, tuple, map, pairs]]),
    ?assertEqual([], [S || S = {_, Moved} <- Shallow, Moved =/= [received, enqueued]]),
    Deep = lists:append([[{Depth, Kind, Callback, Field, probe(Bridge, P)}
                          || P = {Callback, _, Field} <- probes(deep(Depth, Kind))]
                         || Depth <- tl(?DEPTHS), Kind <- [list, tuple, map, pairs]]),
    ct:log("~p deep probes", [length(Deep)]),
    {Ignored, Walked} = lists:partition(fun({_, _, Callback, Field, _}) -> not_read(Callback, Field) end, Deep),
    ?assertEqual([], [D || D = {_, _, _, _, Moved} <- Walked, Moved =/= [received, dropped_invalid]]),
    ?assertEqual([], [D || D = {_, _, _, _, Moved} <- Ignored, Moved =/= [received, enqueued]]),
    M = assert_books_balance(),
    Enqueued = maps:get(enqueued, M),
    Records = consume(?config(broker, Config), ?config(topic, Config), Enqueued),
    ?assertEqual(Enqueued, length(Records)),
    %% The same hooks in the legacy format, which reads fewer fields.
    kafka_bridge_test_lib:stop_bridge(),
    Legacy = start_all_events(Config, #{<<"format">> => <<"legacy">>}),
    [probe(Legacy, P) || Depth <- ?DEPTHS, P <- probes(deep(Depth, list))],
    assert_books_balance().

%% A term millions of elements wide in any field the encoder reads (the
%% payload aside, which has its own limit): a list of pairs, a charlist,
%% a tuple, a map, and a User-Property list as long as a packet allows.
%% Each held a normal scheduler for as long as the walk took (183-704 ms
%% at 2 M elements). Now the walk spends from a budget and, once it is
%% spent, the call moves to a dirty scheduler: no normal scheduler is held
%% over 5 ms, and every call is counted once.
wide_terms_hold_no_scheduler(Config) ->
    Bridge = start_all_events(Config, #{}),
    %% Kept off the calling process's heap, where collecting them could
    %% hold its scheduler too.
    persistent_term:put({?MODULE, wide}, wide_values()),
    try
        Before = ?B:metrics(),
        %% Each call sleeps 1 ms first, so that it is scheduled in afresh
        %% and timed alone.
        {Outcomes, Held, _} = kafka_bridge_test_lib:long_schedules(
                                5, fun() -> [{{C, F}, begin timer:sleep(1), probe(Bridge, P) end}
                                             || P = {C, _, F} <- wide_probes()] end),
        After = assert_books_balance(),
        ct:log("~b calls; held over 5 ms: ~p~nbefore ~p~nafter ~p", [length(Outcomes), Held, Before, After]),
        ?assertEqual([], Held),
        ?assertEqual(length(Outcomes), maps:get(received, After) - maps:get(received, Before)),
        %% Each call is received once, and enqueued unless the queue was
        %% full or the field is one printed as Erlang text, which a term
        %% this large is not (counted in dropped_invalid).
        ct:log("invalid: ~p", [[C || {C, [received, dropped_invalid]} <- Outcomes]]),
        ?assertEqual([], [{C, M} || {C, M} <- Outcomes,
                                    not lists:member(M, [[received, enqueued], [received],
                                                         [received, dropped_invalid]])]),
        ?assert(maps:get(enqueued, After) > maps:get(enqueued, Before))
    after
        persistent_term:erase({?MODULE, wide})
    end.

wide_values() ->
    [lists:duplicate(2000000, {<<"k">>, <<"v">>}), lists:duplicate(2000000, $a),
     list_to_tuple(lists:duplicate(1000000, 1)), maps:from_list([{I, I} || I <- lists:seq(1, 300000)])].

%% Every field with each wide value, and a User-Property list of 2 M pairs.
wide_probes() ->
    Values = [Pairs | _] = persistent_term:get({?MODULE, wide}),
    Msg = message(<<"c1">>, <<"t/1">>, <<"p">>),
    UserProperties = setelement(6, Msg, (element(6, Msg))#{properties => #{'User-Property' => Pairs}}),
    lists:append([probes(V) || V <- Values]) ++ [{on_message_publish, [UserProperties], user_property_list}].

%% rustler's list decoder panicked on an improper list: the event was
%% counted in `received' and in no outcome. Now each is bridged with the
%% list written as Erlang prints it.
improper_lists_are_decoded(Config) ->
    Bridge = start_all_events(Config, #{}),
    Values = [[1 | 2], [a, b | c], [{<<"k">>, <<"v">>} | tail]],
    Moved = [{V, Field, probe(Bridge, P)} || V <- Values, P = {_, _, Field} <- probes(V)],
    ?assertEqual([], [X || X = {_, _, M} <- Moved, M =/= [received, enqueued]]),
    #{enqueued := N} = assert_books_balance(),
    Records = consume(?config(broker, Config), ?config(topic, Config), N),
    ?assertEqual(N, length(Records)),
    Qos = [maps:get(<<"qos">>, J) || #{json := J = #{<<"event">> := <<"message.publish">>}} <- Records],
    ?assert(lists:member(<<"[1|2]">>, Qos)).

%% Random terms in random fields of random hooks, 3 000 calls: after each
%% batch the books balance exactly. The seed is logged to replay a failure.
random_terms_keep_the_books(Config) ->
    Bridge = start_all_events(Config, #{}),
    Seed = {erlang:phash2(make_ref()), erlang:unique_integer([positive]), 7},
    ct:log("seed ~p", [Seed]),
    rand:seed(exsss, Seed),
    lists:foreach(
      fun(_Batch) ->
              [begin
                   Probes = probes(random_term(4)),
                   {Callback, Args, _} = lists:nth(rand:uniform(length(Probes)), Probes),
                   Mangled = [maybe_mangle(A) || A <- Args],
                   _ = apply(?B, Callback, Mangled ++ [Bridge])
               end || _ <- lists:seq(1, 100)],
              assert_books_balance()
      end, lists:seq(1, 30)),
    #{received := Received} = assert_books_balance(),
    ?assertEqual(3000, Received).

maybe_mangle(Arg) ->
    case rand:uniform(5) of
        1 -> random_term(3);
        _ -> Arg
    end.

random_term(0) ->
    random_leaf();
random_term(Depth) ->
    Size = rand:uniform(4) - 1,
    Items = [random_term(Depth - 1) || _ <- lists:seq(1, Size)],
    case rand:uniform(9) of
        1 -> Items;
        2 -> list_to_tuple(Items);
        3 -> maps:from_list([{random_leaf(), I} || I <- Items]);
        4 -> Items ++ random_leaf();
        5 -> [{random_leaf(), I} || I <- Items];
        _ -> random_leaf()
    end.

random_leaf() ->
    case rand:uniform(14) of
        1 -> rand:uniform(1 bsl 70) - (1 bsl 69);
        2 -> rand:uniform() * 1.0e300;
        3 -> crypto:strong_rand_bytes(rand:uniform(20) - 1);
        4 -> <<"text ü"/utf8>>;
        5 -> undefined;
        6 -> lists:nth(rand:uniform(4), [true, false, qos, 'User-Property']);
        7 -> self();
        8 -> make_ref();
        9 -> fun() -> ok end;
        10 -> {192, 0, 2, rand:uniform(300)};
        11 -> <<1:3>>;
        12 -> [];
        13 -> rand:uniform(3) - 1;
        14 -> hd(erlang:ports())
    end.

%%--------------------------------------------------------------------
%% Record templates
%%--------------------------------------------------------------------

%% Every event shaped by a JSON value template and a text header per
%% placeholder it has (issue 37), fed the deep, wide and random terms
%% above, and headers that expand to 1 MB and more: the VM lives, no
%% normal scheduler is held over 5 ms, every call ends in exactly one
%% counter, and Kafka holds exactly what was delivered.
templates_over_hostile_terms(Config) ->
    Broker = ?config(broker, Config),
    %% Room for a record with a 1 MB header and a 1 MB field in its value.
    Topic = unique(<<"hostile_templates">>),
    ok = kafka_bridge_broker:create_topic(Broker, Topic, 3, [{"max.message.bytes", "8388608"}]),
    Roomy = #{<<"kafka">> => #{<<"properties">> => #{<<"message.max.bytes">> => <<"8388608">>}}},
    Shaped = fun(E) ->
                     Fields = kafka_bridge_test_lib:placeholders(E) ++
                         [<<"pub_props.'User-Property'.k">> || lists:prefix("message", binary_to_list(E))],
                     #{<<"enable">> => true, <<"topic">> => Topic,
                       <<"value">> => kafka_bridge_test_lib:json_template(Fields),
                       <<"headers">> => kafka_bridge_test_lib:header_templates(Fields)}
             end,
    Events = maps:from_list([{E, Shaped(E)} || E <- ?EVENTS]),
    {ok, _} = kafka_bridge_test_lib:start_bridge(kafka_bridge_test_lib:config(Broker, Roomy#{<<"events">> => Events})),
    Bridge = ?B:bridge(),
    Deep = [probe(Bridge, P) || Depth <- ?DEPTHS, Kind <- [list, tuple, map, pairs], P <- probes(deep(Depth, Kind))],
    ?assertEqual([], [M || M <- Deep, not lists:member(M, [[received, enqueued], [received, dropped_invalid]])]),
    Seed = {erlang:phash2(make_ref()), erlang:unique_integer([positive]), 11},
    ct:log("seed ~p", [Seed]),
    rand:seed(exsss, Seed),
    [begin
         Probes = probes(random_term(4)),
         {Callback, Args, _} = lists:nth(rand:uniform(length(Probes)), Probes),
         apply(?B, Callback, [maybe_mangle(A) || A <- Args] ++ [Bridge])
     end || _ <- lists:seq(1, 1000)],
    assert_books_balance(),
    persistent_term:put({?MODULE, wide}, wide_values()),
    try
        {Outcomes, Held, _} = kafka_bridge_test_lib:long_schedules(
                                5, fun() -> [begin timer:sleep(1), probe(Bridge, P) end || P <- wide_probes()] end),
        ct:log("~b wide calls; held over 5 ms: ~p", [length(Outcomes), Held]),
        ?assertEqual([], Held)
    after
        persistent_term:erase({?MODULE, wide})
    end,
    %% A 1 MB User-Property in a header of every message event.
    Mb = binary:copy(<<"h">>, 1024 * 1024),
    Msg = message(<<"big">>, <<"t/big">>, <<"p">>),
    publish(setelement(6, Msg, (element(6, Msg))#{properties => #{'User-Property' => [{<<"k">>, Mb}]}})),
    #{enqueued := Enqueued} = assert_books_balance(),
    #{delivered := Delivered, failed := Failed} = kafka_bridge_test_lib:wait_for_delivered(Enqueued, 120000),
    ?assertEqual(Enqueued, Delivered + Failed),
    kafka_bridge_test_lib:stop_bridge(),
    %% A 1 MB payload written into three headers: 3 MB, more than the
    %% default message.max.bytes, which Kafka's client refuses (counted failed).
    Triple = [#{<<"key">> => <<"p", (integer_to_binary(I))/binary>>, <<"value">> => <<"${payload}">>} || I <- [1, 2, 3]],
    {ok, _} = kafka_bridge_test_lib:start_bridge(
                kafka_bridge_test_lib:config(Broker, #{<<"events">> => Events#{<<"message_publish">> => #{
                                                           <<"topic">> => Topic, <<"headers">> => Triple}}})),
    publish(message(<<"big">>, <<"t/big">>, Mb)),
    publish(message(<<"small">>, <<"t/small">>, <<"s">>)),
    ?assertMatch(#{delivered := 1, failed := 1}, kafka_bridge_test_lib:wait_for_delivered(2, 30000)),
    Records = consume(Broker, Topic, Delivered + 1, 5000),
    ct:log("first bridge: ~b enqueued, ~b delivered, ~b failed; ~b records read", [Enqueued, Delivered, Failed, length(Records)]),
    ?assertEqual(Delivered + 1, length(Records)),
    ?assertMatch([_], [R || R = #{headers := H} <- Records, lists:member({<<"pub_props.'User-Property'.k">>, Mb}, H)]),
    ?assertMatch([_], [R || R = #{headers := [{<<"p1">>, <<"s">>}, {<<"p2">>, <<"s">>}, {<<"p3">>, <<"s">>}]} <- Records]).

%%--------------------------------------------------------------------
%% Filters
%%--------------------------------------------------------------------

%% The longest legal filters (65 535 bytes, 32 768 levels) in a route and
%% in an event's filters: a matching publish is routed, and a reconfigure
%% that drops them frees the trie. Both walked the trie a level per stack
%% frame and took the VM down.
longest_filters_route_and_reconfigure(Config) ->
    Broker = ?config(broker, Config),
    RouteTopic = unique(<<"deep_route">>),
    ok = kafka_bridge_broker:create_topic(Broker, RouteTopic),
    Levels = 65535 div 2 + 1,
    Long = iolist_to_binary(lists:join("/", lists:duplicate(Levels, "a"))),
    LongPlus = iolist_to_binary(lists:join("/", lists:duplicate(Levels, "+"))),
    Five = iolist_to_binary(lists:join("/", lists:duplicate(5000, "a"))),
    ?assertEqual(65535, byte_size(Long)),
    Routes = [#{<<"filter">> => F, <<"topic">> => RouteTopic} || F <- [Long, LongPlus, Five]],
    Filters = [Long, LongPlus, Five, <<"plain/#">>],
    Events = #{<<"message_publish">> => #{<<"topic">> => ?config(topic, Config), <<"filters">> => Filters}},
    Base = kafka_bridge_test_lib:config(Broker, #{<<"events">> => Events}),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Base#{<<"routes">> => Routes}),
    [publish(message(<<"c">>, T, T)) || T <- [Long, Five, <<"plain/x">>]],
    Routed = consume(Broker, RouteTopic, 2),
    ?assertEqual(lists:sort([Long, Five]),
                 lists:sort([maps:get(<<"topic">>, J) || #{json := J} <- Routed])),
    ok = emqx_plugin_kafka_bridge_app:on_config_changed(#{}, Base),
    publish(message(<<"c">>, <<"plain/y">>, <<"after">>)),
    Plain = consume(Broker, ?config(topic, Config), 2),
    ?assertEqual([<<"plain/x">>, <<"plain/y">>], lists:sort([maps:get(<<"topic">>, J) || #{json := J} <- Plain])),
    assert_books_balance().

%%--------------------------------------------------------------------
%% The NIF module
%%--------------------------------------------------------------------

%% A purge and reload of the NIF module (a hot patch, or a plugin start
%% that reloads every module) keeps the running bridge reachable; while
%% the module has no NIF library, hook calls are counted in
%% dropped_nif_unavailable instead of vanishing.
nif_module_reload_and_absence(Config) ->
    Nif = emqx_plugin_kafka_bridge_nif,
    start_all_events(Config, #{}),
    Topic = ?config(topic, Config),
    Publish = fun(I) -> publish(message(<<"c">>, <<"t">>, integer_to_binary(I), #{id => <<I:128>>})) end,
    Publish(1),
    %% Deleted and purged, then loaded afresh: the bridge started by the
    %% purged instance is still this library's.
    true = code:delete(Nif),
    _ = code:purge(Nif),
    {module, Nif} = code:load_file(Nif),
    Publish(2),
    ?assertMatch(#{running := true}, ?B:status()),
    %% A module version without the library: its stubs raise.
    {ok, Nif, Beam} = compile:forms(stub_forms(Nif), [binary]),
    {module, Nif} = code:load_binary(Nif, "stub", Beam),
    [Publish(I) || I <- lists:seq(3, 12)],
    ?assertMatch(#{dropped_nif_unavailable := 10}, ?B:metrics()),
    %% The library back: the same bridge again.
    true = code:soft_purge(Nif),
    {module, Nif} = code:load_file(Nif),
    Publish(13),
    %% A handle that is not this library's bridge (as a handle from an
    %% older copy of the library would be) is counted the same way.
    ?assertMatch({ok, _}, ?B:on_message_publish(message(<<"c">>, <<"t">>, <<"x">>), make_ref())),
    Records = consume(?config(broker, Config), Topic, 3),
    ?assertEqual([1, 2, 13], lists:sort(kafka_bridge_test_lib:ids(Records))),
    M = assert_books_balance(),
    ?assertMatch(#{received := 3, dropped_nif_unavailable := 11, dropped := 11}, M),
    ?assertNotEqual(nomatch, binary:match(?B:metrics_text(),
                                          <<"emqx_kafka_bridge_dropped_nif_unavailable_total 11\n">>)).

%% The module's exports, each raising as a stub does when load_nif failed.
stub_forms(Module) ->
    Exports = [{F, A} || {F, A} <- Module:module_info(exports), F =/= module_info],
    Functions = [{function, 1, F, A,
                  [{clause, 1, [{var, 1, '_'} || _ <- lists:seq(1, A)], [],
                    [{call, 1, {remote, 1, {atom, 1, erlang}, {atom, 1, nif_error}}, [{atom, 1, undef}]}]}]}
                 || {F, A} <- Exports],
    [{attribute, 1, module, Module}, {attribute, 1, export, Exports} | Functions].

%%--------------------------------------------------------------------
%% The producer thread
%%--------------------------------------------------------------------

%% A panic in the producer thread (injected through the environment a peer
%% VM starts with; the first producer of the process panics on its first
%% record) once went unnoticed while hooks filled the budget. Now status
%% says failed, an error is logged, the server stops, its supervisor starts
%% a new bridge, and the lost event is counted in dropped_on_stop.
producer_panic_restarts_the_bridge(Config) ->
    Code = ["-pa", filename:dirname(code:which(?B)), "-pa", filename:dirname(code:which(emqx_hooks))],
    {ok, Peer, _} = peer:start(#{connection => standard_io, args => Code,
                                 env => [{"EMQX_KAFKA_BRIDGE_TEST_PRODUCER_PANIC", "1"},
                                         {"PROJECT_ROOT", kafka_bridge_test_lib:project_root()}]}),
    try
        BridgeConfig = kafka_bridge_test_lib:config(
                         ?config(broker, Config),
                         #{<<"events">> => #{<<"message_publish">> => #{<<"topic">> => ?config(topic, Config)}}}),
        Facts = peer:call(Peer, ?MODULE, panic_in_peer, [BridgeConfig], 60000),
        ct:log("~p", [Facts]),
        #{failure_logged := Logged, old_status := OldStatus, old_metrics := OldMetrics, new_status := NewStatus} = Facts,
        ?assert(Logged),
        ?assertMatch(#{state := failed}, OldStatus),
        ?assertMatch(#{received := 1, enqueued := 1, dropped_on_stop := 1, dropped := 1}, OldMetrics),
        ?assertMatch(#{running := true}, NewStatus),
        ?assertEqual([2], kafka_bridge_test_lib:ids(consume(?config(broker, Config), ?config(topic, Config), 1)))
    after
        peer:stop(Peer)
    end.

%% Runs in the peer: the first event makes the producer panic; waits for
%% the supervisor's new bridge, then bridges a second event.
panic_in_peer(BridgeConfig) ->
    {ok, _} = kafka_bridge_test_lib:start_bridge(BridgeConfig),
    Old = ?B:bridge(),
    OldServer = whereis(emqx_plugin_kafka_bridge_server),
    kafka_bridge_test_lib:capture_logs(),
    Publish = fun(I) -> publish(message(<<"c">>, <<"t">>, integer_to_binary(I), #{id => <<I:128>>})) end,
    Publish(1),
    Restarted = fun() ->
                        Server = whereis(emqx_plugin_kafka_bridge_server),
                        is_pid(Server) andalso Server =/= OldServer andalso ?B:bridge() =/= Old
                end,
    ok = kafka_bridge_test_lib:wait_until(Restarted, 20000),
    Logs = kafka_bridge_test_lib:captured_logs(),
    Publish(2),
    Facts = #{failure_logged => lists:any(fun(L) -> binary:match(L, <<"the Kafka producer thread failed (injected">>)
                                                      =/= nomatch end, Logs),
              old_status => emqx_plugin_kafka_bridge_nif:status(Old),
              old_metrics => emqx_plugin_kafka_bridge_nif:metrics(Old),
              new_status => ?B:status()},
    kafka_bridge_test_lib:wait_for_delivered(1, 10000),
    application:stop(emqx_plugin_kafka_bridge),
    Facts.
