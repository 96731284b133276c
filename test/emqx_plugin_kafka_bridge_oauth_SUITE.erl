%% @doc SASL/OAUTHBEARER with an OIDC provider, against Apache Kafka's own
%% JWT validation: a broker whose OAUTHBEARER listener checks each token's
%% RS256 signature against the issuer's JWKS, its audience and issuer
%% (OAuthBearerValidatorCallbackHandler), and re-authenticates every
%% connection within 10 s, so a token that is not refreshed in time fails.
%% The identity provider is kafka_bridge_token_issuer on loopback; its
%% token endpoint speaks TLS with the test CA, which the bridge is given as
%% kafka.sasl.oauthbearer.ca. Every case reads what reached Kafka back.
-module(emqx_plugin_kafka_bridge_oauth_SUITE).

-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(kafka_bridge_test_lib, [ids/1, unique/1, deep_merge/2]).

-define(CLIENT_ID, <<"emqx-bridge">>).
-define(CLIENT_SECRET, <<"Client-S3cret-never-shown">>).
-define(WRONG_SECRET, <<"Wrong-S3cret-never-shown">>).
-define(AUDIENCE, "kafka-cluster").
-define(ISSUER, "http://127.0.0.1/realms/bridge-test").

all() ->
    [delivers_1000_events, tokens_living_30_s_for_two_minutes, wrong_client_secret_then_fixed_live,
     issuer_down_at_start, token_for_the_wrong_audience, aws_msk_iam_token_refused_and_no_secret_shown].

init_per_suite(Config) ->
    Dir = filename:join(?config(priv_dir, Config), "oauth"),
    #{server_cert := Cert, server_key := Key} = Certs = kafka_bridge_test_lib:make_certificates(Dir, <<"unused">>),
    Issuer = kafka_bridge_token_issuer:start(#{dir => filename:join(Dir, "issuer"), client_id => ?CLIENT_ID,
                                               client_secret => ?CLIENT_SECRET, issuer => ?ISSUER,
                                               audience => ?AUDIENCE, lifetime_s => 300, tls => {Cert, Key}}),
    Broker = kafka_bridge_broker:start(filename:join(Dir, "kafka"),
                                       #{oauthbearer => #{jwks_url => kafka_bridge_token_issuer:jwks_url(Issuer),
                                                          audience => ?AUDIENCE, issuer => ?ISSUER},
                                         properties => [{"connections.max.reauth.ms", "10000"}]}),
    [{broker, Broker}, {issuer, Issuer}, {certs, Certs} | Config].

end_per_suite(Config) ->
    kafka_bridge_broker:stop_all(),
    kafka_bridge_token_issuer:stop(?config(issuer, Config)).

init_per_testcase(_Case, Config) ->
    kafka_bridge_test_lib:capture_logs(),
    Topic = unique(<<"oauth">>),
    ok = kafka_bridge_broker:create_topic(?config(broker, Config), Topic),
    [{topic, Topic} | Config].

end_per_testcase(_Case, Config) ->
    kafka_bridge_test_lib:stop_bridge(),
    emqx_hooks:reset(),
    %% What a case changed of the issuer.
    Issuer = kafka_bridge_token_issuer:set(?config(issuer, Config), #{lifetime_s => 300, audience => ?AUDIENCE}),
    %% Up again if a case left it down (it is already up otherwise).
    _ = catch kafka_bridge_token_issuer:start_token_endpoint(Issuer),
    ok.

%%--------------------------------------------------------------------
%% Helpers
%%--------------------------------------------------------------------

bridge_config(Config, Secret) ->
    Issuer = ?config(issuer, Config),
    OAuth = #{<<"token_endpoint">> => kafka_bridge_token_issuer:token_url(Issuer),
              <<"client_id">> => ?CLIENT_ID, <<"client_secret">> => Secret,
              <<"ca">> => list_to_binary(maps:get(ca, ?config(certs, Config))),
              %% Confluent Cloud's: sent with each token (Kafka accepts any).
              <<"extensions">> => #{<<"logicalCluster">> => <<"lkc-test">>}},
    #{<<"kafka">> => #{<<"bootstrap_servers">> => kafka_bridge_broker:bootstrap(?config(broker, Config), oauth),
                       <<"sasl">> => #{<<"mechanism">> => <<"oauthbearer">>, <<"oauthbearer">> => OAuth}},
      <<"events">> => #{<<"message_publish">> => #{<<"topic">> => ?config(topic, Config)}},
      <<"buffer">> => #{<<"flush_timeout">> => 1000}}.

%% Every id of From..To reached the topic once, read back over PLAINTEXT.
assert_delivered(Config, To) ->
    Metrics = kafka_bridge_test_lib:wait_for_delivered(To, 60000),
    ct:log("metrics: ~p~nstatus: ~p", [Metrics, emqx_plugin_kafka_bridge:status()]),
    Read = kafka_bridge_test_lib:consume(?config(broker, Config), ?config(topic, Config), To, 5000),
    ?assertEqual(lists:seq(1, To), lists:sort(ids(Read))),
    Metrics.

wait_for_status(Field, Text) ->
    Shown = fun() -> binary:match(maps:get(Field, emqx_plugin_kafka_bridge:status()), Text) =/= nomatch end,
    Result = kafka_bridge_test_lib:wait_until(Shown, 30000),
    ct:log("status: ~p", [emqx_plugin_kafka_bridge:status()]),
    ?assertEqual(ok, Result).

%%--------------------------------------------------------------------
%% Cases
%%--------------------------------------------------------------------

delivers_1000_events(Config) ->
    {ok, _} = kafka_bridge_test_lib:start_bridge(bridge_config(Config, ?CLIENT_SECRET)),
    kafka_bridge_test_lib:publish_range(1, 1000, <<"oauth/1">>),
    Metrics = assert_delivered(Config, 1000),
    ?assertMatch(#{delivered := 1000, dropped := 0, failed := 0, token_refresh_failures := 0}, Metrics),
    ?assert(maps:get(token_refreshes, Metrics) >= 1),
    ?assertMatch(#{state := connected, sign_in_error := <<>>}, emqx_plugin_kafka_bridge:status()),
    ok = emqx_plugin_kafka_bridge_app:on_health_check(#{}),
    kafka_bridge_test_lib:assert_not_shown([?CLIENT_SECRET, kafka_bridge_token_issuer:last_token()]).

%% Tokens live 30 s and the broker re-authenticates every connection
%% within 10 s: two minutes of publishing need a fresh token every 24 s,
%% each presented to Kafka in time.
tokens_living_30_s_for_two_minutes(Config) ->
    Issuer = kafka_bridge_token_issuer:set(?config(issuer, Config), #{lifetime_s => 30}),
    Before = kafka_bridge_token_issuer:issued(Issuer),
    {ok, _} = kafka_bridge_test_lib:start_bridge(bridge_config(Config, ?CLIENT_SECRET)),
    Batches = 240,
    [begin
         kafka_bridge_test_lib:publish_range(N * 10 + 1, N * 10 + 10, <<"oauth/1">>),
         timer:sleep(500)
     end || N <- lists:seq(0, Batches - 1)],
    Metrics = assert_delivered(Config, Batches * 10),
    ?assertMatch(#{dropped := 0, failed := 0, token_refresh_failures := 0}, Metrics),
    Refreshes = maps:get(token_refreshes, Metrics),
    ct:log("token refreshes: ~b, tokens issued: ~b", [Refreshes, kafka_bridge_token_issuer:issued(Issuer) - Before]),
    ?assert(Refreshes >= 5),
    ?assert(kafka_bridge_token_issuer:issued(Issuer) - Before >= Refreshes).

wrong_client_secret_then_fixed_live(Config) ->
    Bad = bridge_config(Config, ?WRONG_SECRET),
    {ok, _} = kafka_bridge_test_lib:start_bridge(Bad),
    kafka_bridge_test_lib:publish_range(1, 100, <<"oauth/1">>),
    wait_for_status(sign_in_error, <<"token request to ">>),
    #{sign_in_error := Error} = emqx_plugin_kafka_bridge:status(),
    ?assertNotEqual(nomatch, binary:match(Error, <<"failed: HTTP 401 (invalid_client">>)),
    {error, Health} = emqx_plugin_kafka_bridge_app:on_health_check(#{}),
    ?assertNotEqual(nomatch, binary:match(Health, <<"HTTP 401">>)),
    ?assertMatch(#{delivered := 0, dropped := 0, enqueued := 100}, emqx_plugin_kafka_bridge:metrics()),
    ?assert(kafka_bridge_test_lib:metric(token_refresh_failures) >= 1),
    ok = emqx_plugin_kafka_bridge_app:on_config_changed(Bad, bridge_config(Config, ?CLIENT_SECRET)),
    kafka_bridge_test_lib:publish_range(101, 200, <<"oauth/1">>),
    assert_delivered(Config, 200),
    ?assertMatch(#{sign_in_error := <<>>}, emqx_plugin_kafka_bridge:status()),
    kafka_bridge_test_lib:assert_not_shown([?CLIENT_SECRET, ?WRONG_SECRET]).

%% The token endpoint refuses connections when the bridge starts: events
%% wait in the buffer, and go out once a token can be had.
issuer_down_at_start(Config) ->
    kafka_bridge_token_issuer:stop_token_endpoint(?config(issuer, Config)),
    {ok, _} = kafka_bridge_test_lib:start_bridge(bridge_config(Config, ?CLIENT_SECRET)),
    kafka_bridge_test_lib:publish_range(1, 300, <<"oauth/1">>),
    wait_for_status(sign_in_error, <<"request to https://127.0.0.1:">>),
    timer:sleep(2000),
    ?assertMatch(#{delivered := 0, dropped := 0, enqueued := 300}, emqx_plugin_kafka_bridge:metrics()),
    _ = kafka_bridge_token_issuer:start_token_endpoint(?config(issuer, Config)),
    assert_delivered(Config, 300),
    ?assertMatch(#{sign_in_error := <<>>}, emqx_plugin_kafka_bridge:status()).

%% A token Kafka does not accept (issued for another audience): the fetch
%% works, the broker refuses, and status says so.
token_for_the_wrong_audience(Config) ->
    _ = kafka_bridge_token_issuer:set(?config(issuer, Config), #{audience => "someone-else"}),
    {ok, _} = kafka_bridge_test_lib:start_bridge(bridge_config(Config, ?CLIENT_SECRET)),
    kafka_bridge_test_lib:publish_range(1, 50, <<"oauth/1">>),
    wait_for_status(last_error, <<"Kafka refused the token">>),
    {error, Health} = emqx_plugin_kafka_bridge_app:on_health_check(#{}),
    ?assertNotEqual(nomatch, binary:match(Health, <<"Kafka refused the token">>)),
    ?assertMatch(#{delivered := 0, dropped := 0, sign_in_error := <<>>},
                 maps:merge(emqx_plugin_kafka_bridge:metrics(), emqx_plugin_kafka_bridge:status())).

%% AWS MSK IAM with static keys, against this OAUTHBEARER listener: a
%% token is signed and offered (Kafka's JWT validator refuses it: only MSK
%% checks SigV4, see README), status names the refusal, and neither the
%% keys' secrets nor the token show anywhere.
aws_msk_iam_token_refused_and_no_secret_shown(Config) ->
    Secret = <<"Aws-Secret-never-shown">>,
    Session = <<"Aws-Session-never-shown">>,
    Aws = #{<<"region">> => <<"us-east-1">>, <<"access_key_id">> => <<"AKIABRIDGETEST">>,
            <<"secret_access_key">> => Secret, <<"session_token">> => Session},
    Base = bridge_config(Config, ?CLIENT_SECRET),
    Msk = Base#{<<"kafka">> => (maps:get(<<"kafka">>, Base))#{<<"sasl">> => #{<<"mechanism">> => <<"aws_msk_iam">>,
                                                                            <<"aws">> => Aws}}},
    {ok, _} = kafka_bridge_test_lib:start_bridge(Msk),
    kafka_bridge_test_lib:publish_range(1, 20, <<"oauth/1">>),
    wait_for_status(last_error, <<"Kafka refused the token">>),
    ?assertMatch(#{delivered := 0, dropped := 0, token_refresh_failures := 0}, emqx_plugin_kafka_bridge:metrics()),
    ?assert(kafka_bridge_test_lib:metric(token_refreshes) >= 1),
    %% The token is base64url of "https://kafka.us-east-1...?...X-Amz-Signature=...".
    kafka_bridge_test_lib:assert_not_shown([Secret, Session, <<"aHR0cHM6Ly9rYWZrYS">>, <<"X-Amz-Signature">>]),
    %% A config change that breaks the keys: refused, naming the key, no secret.
    Bad = Msk#{<<"kafka">> => (maps:get(<<"kafka">>, Msk))#{<<"sasl">> => #{<<"mechanism">> => <<"aws_msk_iam">>,
                                                                          <<"aws">> => maps:remove(<<"access_key_id">>, Aws)}}},
    {error, Error} = emqx_plugin_kafka_bridge_app:on_config_changed(Msk, Bad),
    ?assertNotEqual(nomatch, binary:match(Error, <<"kafka.sasl.aws.access_key_id">>)),
    kafka_bridge_test_lib:assert_not_shown([Secret, Session]).
