%% @doc An OIDC identity provider on loopback, for the OAUTHBEARER tests:
%% the client credentials grant at /token (client_secret_basic, as
%% Keycloak and Entra take it) issuing RS256 JWTs, and the key set at
%% /jwks, which Kafka's OAuthBearerValidatorCallbackHandler checks them
%% against. Two inets httpd servers, so that the token endpoint can be
%% down while Kafka still reads the keys; the token endpoint speaks TLS
%% when given a certificate.
-module(kafka_bridge_token_issuer).

-export([start/1, stop/1, set/2, token_url/1, jwks_url/1, issued/1, last_token/0,
         stop_token_endpoint/1, start_token_endpoint/1]).
%% inets httpd's callback.
-export([do/1]).

-include_lib("inets/include/httpd.hrl").
-include_lib("public_key/include/public_key.hrl").

-define(KID, "bridge-test-key").

%% @doc Options: dir, client_id, client_secret, issuer, audience,
%% lifetime_s (of each token), and tls => {CertFile, KeyFile} for /token.
start(Options = #{dir := Dir}) ->
    {ok, _} = application:ensure_all_started(inets),
    {ok, _} = application:ensure_all_started(ssl),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Issuer = Options#{key => public_key:generate_key({rsa, 2048, 65537}),
                      jwks_port => kafka_bridge_test_lib:free_port(),
                      token_port => kafka_bridge_test_lib:free_port(),
                      issued => counters:new(1, [])},
    persistent_term:put({?MODULE, settings}, Issuer),
    {ok, Jwks} = serve(Issuer, maps:get(jwks_port, Issuer), undefined),
    start_token_endpoint(Issuer#{jwks_pid => Jwks}).

stop(Issuer) ->
    stop_token_endpoint(Issuer),
    inets:stop(httpd, maps:get(jwks_pid, Issuer)),
    persistent_term:erase({?MODULE, settings}),
    ok.

%% @doc Changes what the next tokens are (lifetime_s, audience) or what the
%% endpoint accepts (client_secret).
set(Issuer, Changes) ->
    persistent_term:put({?MODULE, settings}, maps:merge(persistent_term:get({?MODULE, settings}), Changes)),
    maps:merge(Issuer, Changes).

stop_token_endpoint(#{token_pid := Pid}) ->
    inets:stop(httpd, Pid);
stop_token_endpoint(_) ->
    ok.

%% @doc The token endpoint, on the same port as before.
start_token_endpoint(Issuer = #{token_port := Port}) ->
    {ok, Pid} = serve(Issuer, Port, maps:get(tls, Issuer, undefined)),
    Issuer#{token_pid => Pid}.

token_url(#{token_port := Port} = Issuer) ->
    Scheme = case maps:is_key(tls, Issuer) of true -> "https"; false -> "http" end,
    iolist_to_binary([Scheme, "://127.0.0.1:", integer_to_list(Port), "/token"]).

jwks_url(#{jwks_port := Port}) ->
    "http://127.0.0.1:" ++ integer_to_list(Port) ++ "/jwks".

%% @doc Tokens issued so far.
issued(#{issued := Counter}) ->
    counters:get(Counter, 1).

%% @doc The last token issued, for the tests that it is never shown.
last_token() ->
    persistent_term:get({?MODULE, last_token}).

serve(#{dir := Dir}, Port, Tls) ->
    Root = filename:join(Dir, "httpd-" ++ integer_to_list(Port)),
    ok = filelib:ensure_dir(filename:join(Root, "x")),
    Socket = case Tls of
                 undefined -> [];
                 {Cert, Key} -> [{socket_type, {ssl, [{certfile, Cert}, {keyfile, Key}]}}]
             end,
    inets:start(httpd, [{port, Port}, {bind_address, {127, 0, 0, 1}}, {server_name, "issuer"},
                        {server_root, Root}, {document_root, Root}, {modules, [?MODULE]} | Socket]).

%%--------------------------------------------------------------------
%% The endpoints
%%--------------------------------------------------------------------

do(#mod{method = Method, request_uri = Uri, parsed_header = Headers, entity_body = Body}) ->
    Issuer = persistent_term:get({?MODULE, settings}),
    {Code, Json} = case {Method, Uri} of
                       {"GET", "/jwks"} -> {200, jwks(Issuer)};
                       {"POST", "/token"} -> token(Issuer, Headers, Body);
                       _ -> {404, <<"{\"error\":\"not_found\"}">>}
                   end,
    {proceed, [{response, {response, [{code, Code}, {content_type, "application/json"},
                                      {content_length, integer_to_list(byte_size(Json))}],
                           [Json]}}]}.

jwks(#{key := #'RSAPrivateKey'{modulus = N, publicExponent = E}}) ->
    iolist_to_binary(["{\"keys\":[{\"kty\":\"RSA\",\"use\":\"sig\",\"alg\":\"RS256\",\"kid\":\"", ?KID,
                      "\",\"n\":\"", b64url(binary:encode_unsigned(N)),
                      "\",\"e\":\"", b64url(binary:encode_unsigned(E)), "\"}]}"]).

token(Issuer = #{client_id := Id, client_secret := Secret}, Headers, Body) ->
    Expected = "Basic " ++ base64:encode_to_string(iolist_to_binary([Id, ":", Secret])),
    Form = uri_string:dissect_query(Body),
    case {proplists:get_value("authorization", Headers), proplists:get_value("grant_type", Form)} of
        {Expected, "client_credentials"} ->
            counters:add(maps:get(issued, Issuer), 1, 1),
            Lifetime = maps:get(lifetime_s, Issuer),
            Jwt = jwt(Issuer, Lifetime),
            persistent_term:put({?MODULE, last_token}, Jwt),
            {200, iolist_to_binary(["{\"access_token\":\"", Jwt, "\",\"token_type\":\"Bearer\",\"expires_in\":",
                                    integer_to_list(Lifetime), "}"])};
        {Expected, _} ->
            {400, <<"{\"error\":\"unsupported_grant_type\"}">>};
        _ ->
            {401, <<"{\"error\":\"invalid_client\",\"error_description\":\"client authentication failed\"}">>}
    end.

jwt(#{key := Key, client_id := Id, issuer := Iss, audience := Aud}, Lifetime) ->
    Now = erlang:system_time(second),
    Header = b64url(["{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"", ?KID, "\"}"]),
    Claims = b64url(["{\"iss\":\"", Iss, "\",\"aud\":\"", Aud, "\",\"sub\":\"", Id, "\",\"iat\":",
                     integer_to_list(Now), ",\"exp\":", integer_to_list(Now + Lifetime), ",\"scope\":\"kafka\"}"]),
    Signed = <<Header/binary, ".", Claims/binary>>,
    <<Signed/binary, ".", (b64url(public_key:sign(Signed, sha256, Key)))/binary>>.

%% base64url without padding (OTP 25's base64 has no such mode).
b64url(Data) ->
    Standard = base64:encode(iolist_to_binary(Data)),
    << <<(case C of $+ -> $-; $/ -> $_; _ -> C end)>> || <<C>> <= Standard, C =/= $= >>.
