%% @doc TLS and SASL on Apache Kafka's own listeners: one broker with a
%% one-way TLS listener, a mutual TLS one, SASL_SSL and SASL_PLAINTEXT
%% (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512). Certificates come from the
%% openssl CLI. Every case reads what reached Kafka back over the same
%% listener and settings.
-module(emqx_plugin_kafka_bridge_security_SUITE).

-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(kafka_bridge_test_lib, [ids/1, unique/1, deep_merge/2]).

-define(KEY_PASSWORD, <<"Key-Pa55-never-shown">>).
-define(SASL_PASSWORD, <<"Sasl-Pa55-never-shown">>).
-define(WRONG_PASSWORD, <<"Wrong-Pa55-never-shown">>).
-define(SECRETS, [?KEY_PASSWORD, ?SASL_PASSWORD, ?WRONG_PASSWORD]).

all() ->
    [tls_with_explicit_ca, tls_ca_from_ssl_cert_file, mutual_tls_encrypted_key, mutual_tls_inline_pem,
     sasl_ssl_plain, sasl_ssl_scram_sha_256_zstd, sasl_ssl_scram_sha_512_zstd, sasl_plaintext_scram_sha_512,
     wrong_password_then_fixed_live,
     wrong_ca_then_fixed_live, missing_client_certificate_then_fixed_live, no_secret_in_any_output].

init_per_suite(Config) ->
    Dir = filename:join(?config(priv_dir, Config), "security"),
    Certs = kafka_bridge_test_lib:make_certificates(Dir, ?KEY_PASSWORD),
    Topics = [unique(<<"secure">>) || _ <- lists:seq(1, 14)],
    Broker = kafka_bridge_broker:start(filename:join(Dir, "kafka"),
                                       #{secured => Certs, users => [{"alice", binary_to_list(?SASL_PASSWORD)}]}),
    [ok = kafka_bridge_broker:create_topic(Broker, T) || T <- Topics],
    %% One broker; each key names the listener its cases connect to.
    Listeners = [{Key, Broker#{client_listener => Listener}}
                 || {Key, Listener} <- [{tls, ssl}, {mtls, mtls}, {sasl, sasl_ssl}, {sasl_plaintext, sasl_plaintext}]],
    [{certs, Certs}, {topics, Topics} | Listeners ++ Config].

end_per_suite(_Config) ->
    kafka_bridge_broker:stop_all().

init_per_testcase(_Case, Config) ->
    kafka_bridge_test_lib:capture_logs(),
    Config.

end_per_testcase(_Case, _Config) ->
    kafka_bridge_test_lib:stop_bridge(),
    emqx_hooks:reset().

%%--------------------------------------------------------------------
%% Helpers
%%--------------------------------------------------------------------

topic(Config) ->
    [Topic | Rest] = case persistent_term:get({?MODULE, topics}, undefined) of
                         undefined -> ?config(topics, Config);
                         Left -> Left
                     end,
    persistent_term:put({?MODULE, topics}, Rest),
    Topic.

bridge_config(Broker, Topic, Kafka) ->
    #{<<"kafka">> => Kafka#{<<"bootstrap_servers">> => kafka_bridge_broker:bootstrap(Broker)},
      <<"events">> => #{<<"message_publish">> => #{<<"topic">> => Topic}},
      <<"buffer">> => #{<<"flush_timeout">> => 1000}}.

ssl(Config, Extra) ->
    #{<<"ssl">> => maps:merge(#{<<"enable">> => true, <<"ca">> => path(Config, ca)}, Extra)}.

path(Config, Name) ->
    list_to_binary(maps:get(Name, ?config(certs, Config))).

pem(Config, Name) ->
    {ok, Pem} = file:read_file(maps:get(Name, ?config(certs, Config))),
    Pem.

%% What a reader needs for the broker named BrokerKey.
reader_properties(Config, tls) ->
    ["security.protocol=ssl", "ssl.ca.location=" ++ maps:get(ca, ?config(certs, Config))];
reader_properties(Config, mtls) ->
    Certs = ?config(certs, Config),
    reader_properties(Config, tls) ++ ["ssl.certificate.location=" ++ maps:get(client_cert, Certs),
                                       "ssl.key.location=" ++ maps:get(client_key, Certs)];
reader_properties(Config, sasl) ->
    ["security.protocol=sasl_ssl", "ssl.ca.location=" ++ maps:get(ca, ?config(certs, Config)) | sasl_reader()];
reader_properties(_Config, sasl_plaintext) ->
    ["security.protocol=sasl_plaintext" | sasl_reader()].

sasl_reader() ->
    ["sasl.mechanism=SCRAM-SHA-512", "sasl.username=alice", "sasl.password=" ++ binary_to_list(?SASL_PASSWORD)].

%% Publishes ids From..To; all of them (and only them) reach Topic.
delivers(Config, BrokerKey, Topic, From, To) ->
    kafka_bridge_test_lib:publish_range(From, To, <<"secure/1">>),
    Metrics = kafka_bridge_test_lib:wait_for_delivered(To, 30000),
    ct:log("metrics: ~p~nstatus: ~p", [Metrics, emqx_plugin_kafka_bridge:status()]),
    Read = kafka_bridge_test_lib:consume(?config(BrokerKey, Config), Topic, To, 5000,
                                        reader_properties(Config, BrokerKey)),
    ?assertEqual(lists:seq(1, To), lists:usort(ids(Read))).

starts_and_delivers(Config, BrokerKey, Kafka) ->
    Topic = topic(Config),
    {ok, _} = kafka_bridge_test_lib:start_bridge(bridge_config(?config(BrokerKey, Config), Topic, Kafka)),
    delivers(Config, BrokerKey, Topic, 1, 200).

%% The bridge stays up and buffers, status and health give Cause, and a
%% live config change to Fixed delivers every event.
fails_then_fixed_live(Config, BrokerKey, Broken, Fixed, Cause) ->
    Topic = topic(Config),
    Broker = ?config(BrokerKey, Config),
    Bad = bridge_config(Broker, Topic, Broken),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Bad),
    kafka_bridge_test_lib:publish_range(1, 100, <<"secure/1">>),
    Reported = fun() -> binary:match(maps:get(last_error, emqx_plugin_kafka_bridge:status()), Cause) =/= nomatch end,
    ok = kafka_bridge_test_lib:wait_until(Reported, 20000),
    Status = emqx_plugin_kafka_bridge:status(),
    ct:log("status while broken: ~p", [Status]),
    ?assertMatch(#{running := true, state := State} when State =/= connected, Status),
    {error, Health} = emqx_plugin_kafka_bridge_app:on_health_check(#{}),
    ?assertNotEqual(nomatch, binary:match(Health, Cause)),
    ?assertMatch(#{delivered := 0, dropped := 0, enqueued := 100}, emqx_plugin_kafka_bridge:metrics()),
    ok = emqx_plugin_kafka_bridge_app:on_config_changed(Bad, bridge_config(Broker, Topic, Fixed)),
    delivers(Config, BrokerKey, Topic, 101, 200),
    assert_no_secret_shown().

%% No secret in the captured logs, status, metrics, ctl output, the
%% server's sys:get_status/1 or the application env.
assert_no_secret_shown() ->
    kafka_bridge_test_lib:assert_not_shown(?SECRETS).

%%--------------------------------------------------------------------
%% Cases
%%--------------------------------------------------------------------

tls_with_explicit_ca(Config) ->
    starts_and_delivers(Config, tls, ssl(Config, #{})).

%% No CA given: the system store, which SSL_CERT_FILE names as it does
%% for OpenSSL itself (without it librdkafka probes the usual bundle paths).
%% The variable is set for a VM of its own: a C library reads the
%% process environment, which os:putenv/2 does not change.
tls_ca_from_ssl_cert_file(Config) ->
    Ebin = filename:dirname(code:which(emqx_plugin_kafka_bridge)),
    TestEbin = filename:dirname(code:which(emqx_hooks)),
    {ok, Peer, _} = peer:start(#{connection => standard_io, args => ["-pa", Ebin, "-pa", TestEbin],
                                 env => [{"SSL_CERT_FILE", binary_to_list(path(Config, ca))}]}),
    try
        Topic = topic(Config),
        Bridge = bridge_config(?config(tls, Config), Topic, #{<<"ssl">> => #{<<"enable">> => true}}),
        ok = peer:call(Peer, kafka_bridge_test_lib, set_plugin_config, [Bridge]),
        {ok, _} = peer:call(Peer, application, ensure_all_started, [emqx_plugin_kafka_bridge]),
        ok = peer:call(Peer, kafka_bridge_test_lib, publish_range, [1, 100, <<"secure/1">>]),
        Metrics = peer:call(Peer, kafka_bridge_test_lib, wait_for_delivered, [100, 30000]),
        ct:log("~p", [Metrics]),
        Read = kafka_bridge_test_lib:consume(?config(tls, Config), Topic, 100, 5000, reader_properties(Config, tls)),
        ?assertEqual(lists:seq(1, 100), lists:usort(ids(Read)))
    after
        peer:stop(Peer)
    end.

mutual_tls_encrypted_key(Config) ->
    starts_and_delivers(Config, mtls, ssl(Config, #{<<"certificate">> => path(Config, client_cert),
                                                    <<"key">> => path(Config, client_encrypted_key),
                                                    <<"key_password">> => ?KEY_PASSWORD})),
    assert_no_secret_shown().

mutual_tls_inline_pem(Config) ->
    starts_and_delivers(Config, mtls, #{<<"ssl">> => #{<<"enable">> => true, <<"ca">> => pem(Config, ca),
                                                       <<"certificate">> => pem(Config, client_cert),
                                                       <<"key">> => pem(Config, client_key)}}).

scram(Config, Mechanism, User, Password) ->
    (ssl(Config, #{}))#{<<"sasl">> => sasl(Mechanism, User, Password),
                        <<"properties">> => #{<<"compression.type">> => <<"zstd">>}}.

sasl(Mechanism, User, Password) ->
    #{<<"mechanism">> => Mechanism, <<"username">> => User, <<"password">> => Password}.

%% tansu, the broker these tests ran on first, could not do PLAIN.
sasl_ssl_plain(Config) ->
    starts_and_delivers(Config, sasl, (ssl(Config, #{}))#{<<"sasl">> => sasl(<<"plain">>, <<"alice">>, ?SASL_PASSWORD)}),
    assert_no_secret_shown().

sasl_ssl_scram_sha_256_zstd(Config) ->
    starts_and_delivers(Config, sasl, scram(Config, <<"scram_sha_256">>, <<"alice">>, ?SASL_PASSWORD)),
    assert_no_secret_shown().

sasl_ssl_scram_sha_512_zstd(Config) ->
    starts_and_delivers(Config, sasl, scram(Config, <<"scram_sha_512">>, <<"alice">>, ?SASL_PASSWORD)).

sasl_plaintext_scram_sha_512(Config) ->
    starts_and_delivers(Config, sasl_plaintext, #{<<"sasl">> => sasl(<<"scram_sha_512">>, <<"alice">>, ?SASL_PASSWORD)}),
    assert_no_secret_shown().

wrong_password_then_fixed_live(Config) ->
    fails_then_fixed_live(Config, sasl,
                          scram(Config, <<"scram_sha_512">>, <<"alice">>, ?WRONG_PASSWORD),
                          scram(Config, <<"scram_sha_512">>, <<"alice">>, ?SASL_PASSWORD),
                          <<"SASL authentication failed">>).

wrong_ca_then_fixed_live(Config) ->
    fails_then_fixed_live(Config, tls, ssl(Config, #{<<"ca">> => path(Config, other_ca)}), ssl(Config, #{}),
                          <<"certificate verify failed">>).

missing_client_certificate_then_fixed_live(Config) ->
    fails_then_fixed_live(Config, mtls, ssl(Config, #{}),
                          ssl(Config, #{<<"certificate">> => path(Config, client_cert),
                                        <<"key">> => path(Config, client_key)}),
                          <<"TLS handshake failed: no client certificate">>).

%% Secrets in every error path: validation errors, a crash of the server
%% while it holds the config, and what stays in the application env.
no_secret_in_any_output(Config) ->
    Topic = topic(Config),
    Good = bridge_config(?config(sasl, Config), Topic, scram(Config, <<"scram_sha_512">>, <<"alice">>, ?SASL_PASSWORD)),
    Bads = [deep_merge(Good, #{<<"kafka">> => #{<<"sasl">> => #{<<"mechanism">> => <<"none">>}}}),
            deep_merge(Good, #{<<"kafka">> => #{<<"sasl">> => #{<<"password">> => {?SASL_PASSWORD}}}}),
            deep_merge(Good, #{<<"kafka">> => #{<<"properties">> => #{<<"sasl.password">> => [?SASL_PASSWORD]}}}),
            deep_merge(Good, #{<<"kafka">> => #{<<"ssl">> => #{<<"key_password">> => ?KEY_PASSWORD}}}),
            deep_merge(Good, #{<<"kafka">> => #{<<"properties">> => #{<<"ssl.key.password">> => ?KEY_PASSWORD,
                                                                       <<"acks">> => <<"most">>}}})],
    Errors = [emqx_plugin_kafka_bridge_app:on_config_changed(Good, Bad) || Bad <- Bads],
    ct:log("~p", [Errors]),
    [?assertMatch({error, <<_/binary>>}, E) || E <- Errors],
    [?assertEqual(nomatch, binary:match(E, ?SECRETS)) || {error, E} <- Errors],
    {ok, _} = kafka_bridge_test_lib:start_bridge(Good),
    [{error, _} = emqx_plugin_kafka_bridge_app:on_config_changed(Good, Bad) || Bad <- Bads],
    %% A crash of the server: its crash report and the supervisor's.
    Server = whereis(emqx_plugin_kafka_bridge_server),
    sys:terminate(Server, injected_crash),
    ok = kafka_bridge_test_lib:wait_until(
           fun() -> not lists:member(whereis(emqx_plugin_kafka_bridge_server), [undefined, Server]) end, 10000),
    %% The name is registered before init/1 runs; a sys call waits for init
    %% to finish, and so for the hooks to be back.
    _ = sys:get_status(emqx_plugin_kafka_bridge_server),
    delivers(Config, sasl, Topic, 1, 50),
    assert_no_secret_shown().
