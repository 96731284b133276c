%% @doc Apache Kafka for the suites and the bench: one KRaft node (broker
%% and controller in one JVM) from the jars `make kafka' puts in
%% _build/kafka/lib, on free loopback ports, in a directory of its own.
%%
%% A broker is a map: `dir', `os_pid', `port' (its PLAINTEXT listener,
%% where topics are administered), `listeners' (name => port) and the
%% options it was started with. With `secured => Certs' it also listens on
%% `ssl' (one-way TLS), `mtls' (TLS that requires a client certificate),
%% `sasl_ssl' and `sasl_plaintext' (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512).
%%
%% A cluster (start_cluster/2) is `#{dir, brokers => [Broker]}': three
%% such nodes, each a controller voter, replicating as production clusters
%% do. bootstrap/1, create_topic/2,3,4, admin/2 and describe_topic/2 take
%% a cluster as they take a broker.
-module(kafka_bridge_broker).

-export([start/1, start/2, start_cluster/2, stop/1, stop_all/0, kill/1, shut_down/1, restart/1, pause/1, resume/1,
         bootstrap/1, bootstrap/2, create_topic/2, create_topic/3, create_topic/4, admin/2, describe_topic/2,
         kafka_class/3, log_batches/2]).

%% A fixed cluster id (any 16 bytes in url-safe base64): formatting needs
%% one, and asking Kafka for a random one costs a JVM start.
-define(CLUSTER_ID, "YnJpZGdlLXRlc3RzLWlkMQ").
-define(JAAS_SCRAM, "org.apache.kafka.common.security.scram.ScramLoginModule required;").

%% @doc A fresh node under Dir, see start/2.
start(Dir) ->
    start(Dir, #{}).

%% @doc A fresh node in a new directory under Parent. Options:
%% - `port': the PLAINTEXT listener's port (default: a free one), for a
%%   test that points the bridge at a broker before it exists;
%% - `secured => Certs' (from kafka_bridge_test_lib:make_certificates/2) and
%%   `users => [{Name, Password}]': SASL users, each known to PLAIN and to
%%   both SCRAM mechanisms;
%% - `oauthbearer => #{jwks_url, audience, issuer}': an OAUTHBEARER
%%   listener (`oauth', SASL_PLAINTEXT) whose broker checks each JWT's
%%   RS256 signature against the JWKS, its audience and its issuer
%%   (OAuthBearerValidatorCallbackHandler, Kafka's own);
%% - `properties => [{Key, Value}]': server properties over the defaults
%%   below (e.g. `{"auto.create.topics.enable", "true"}'). With an
%%   `authorizer.class.name', User:ANONYMOUS (the PLAINTEXT listener, where
%%   the tests administer and read, and inter-broker traffic) may do
%%   anything.
start(Parent, Options) ->
    %% A directory of its own: suites share their priv_dir, and the
    %% bench's two VMs their directory.
    Dir = filename:join(Parent, lists:concat(["kafka-", os:getpid(), "-", erlang:unique_integer([positive])])),
    ok = filelib:ensure_dir(filename:join([Dir, "data", "x"])),
    Broker = prepare(Dir, Options),
    Broker#{os_pid => wait_listening(Broker, spawn_jvm(Broker))}.

%% @doc A fresh cluster of `brokers' (default 3) KRaft nodes in a new
%% directory under Parent, each broker and controller in one JVM with a
%% 384 MB heap, all three voters: topics are created with replication
%% factor 3 and `min.insync.replicas' 2, Kafka's internal topics too.
%% Options as start/2 (`properties' apply to every node). Returns once
%% every node listens.
start_cluster(Parent, Options) ->
    Dir = filename:join(Parent, lists:concat(["cluster-", os:getpid(), "-", erlang:unique_integer([positive])])),
    Count = maps:get(brokers, Options, 3),
    Ids = lists:seq(1, Count),
    ControllerPorts = [kafka_bridge_test_lib:free_port() || _ <- Ids],
    Voters = lists:join(",", [[integer_to_list(Id), "@127.0.0.1:", integer_to_list(P)]
                              || {Id, P} <- lists:zip(Ids, ControllerPorts)]),
    Replicated = [{"default.replication.factor", integer_to_list(Count)},
                  {"min.insync.replicas", integer_to_list(min(2, Count))},
                  {"offsets.topic.replication.factor", integer_to_list(Count)},
                  {"transaction.state.log.replication.factor", integer_to_list(Count)},
                  {"transaction.state.log.min.isr", integer_to_list(min(2, Count))}],
    Prepare = fun({Id, ControllerPort}) ->
                      prepare(filename:join(Dir, "broker-" ++ integer_to_list(Id)),
                              Options#{node_id => Id, controller_port => ControllerPort, voters => Voters,
                                       heap_mb => 384,
                                       properties => Replicated ++ maps:get(properties, Options, [])})
              end,
    %% Formatting starts a JVM per node: side by side, then every node
    %% launched before any is waited for (a lone voter never opens its
    %% listener: it waits for a quorum).
    Brokers = parallel(Prepare, lists:zip(Ids, ControllerPorts)),
    #{dir => Dir, brokers => restart(Brokers)}.

parallel(Fun, Items) ->
    Self = self(),
    Pids = [spawn_link(fun() -> Self ! {self(), catch Fun(Item)} end) || Item <- Items],
    [receive {Pid, {'EXIT', Reason}} -> error(Reason); {Pid, Result} -> Result end || Pid <- Pids].

%% A node's directory, properties and formatted storage, not started yet.
prepare(Dir, Options) ->
    ok = filelib:ensure_dir(filename:join([Dir, "data", "x"])),
    Port = maps:get(port, Options, kafka_bridge_test_lib:free_port()),
    Secured = [{Name, kafka_bridge_test_lib:free_port()}
               || maps:is_key(secured, Options), Name <- [ssl, mtls, sasl_ssl, sasl_plaintext]],
    OAuth = [{oauth, kafka_bridge_test_lib:free_port()} || maps:is_key(oauthbearer, Options)],
    ControllerPort = maps:get(controller_port, Options, kafka_bridge_test_lib:free_port()),
    Broker = maps:merge(#{node_id => 1, voters => ["1@127.0.0.1:", integer_to_list(ControllerPort)], heap_mb => 512},
                        Options#{dir => Dir, port => Port, controller_port => ControllerPort,
                                 listeners => maps:from_list([{plaintext, Port} | Secured ++ OAuth])}),
    ok = write_properties(Broker),
    ok = format(Broker),
    Broker.

%% @doc kill -9 of the JVM, as a crash would; restart/1 brings it back on
%% the same ports and data.
kill(Broker = #{os_pid := OsPid, port := Port}) ->
    os:cmd("kill -9 " ++ OsPid),
    ok = kafka_bridge_test_lib:wait_until(fun() -> not port_open(Port) end, 10000),
    Broker.

%% A list of brokers (a cluster's, all down) is launched side by side.
restart(Brokers) when is_list(Brokers) ->
    Launched = [B#{os_pid => spawn_jvm(B)} || B <- Brokers],
    [B#{os_pid => wait_listening(B, OsPid)} || B = #{os_pid := OsPid} <- Launched];
restart(Broker) ->
    Broker#{os_pid => wait_listening(Broker, spawn_jvm(Broker))}.

%% @doc SIGTERM, as an operator's restart for an upgrade: Kafka's
%% controlled shutdown moves the broker's leaderships first. Returns once
%% the JVM has exited.
shut_down(Broker = #{os_pid := OsPid}) ->
    os:cmd("kill -TERM " ++ OsPid),
    ok = kafka_bridge_test_lib:wait_until(fun() -> os:cmd("kill -0 " ++ OsPid ++ " 2>&1") =/= "" end, 60000),
    Broker.

%% @doc SIGSTOP: the broker holds its connections and answers nothing
%% until resume/1 (SIGCONT), as a broker in a long GC pause or on a
%% stalled disk.
pause(Broker = #{os_pid := OsPid}) ->
    os:cmd("kill -STOP " ++ OsPid),
    Broker.

resume(Broker = #{os_pid := OsPid}) ->
    os:cmd("kill -CONT " ++ OsPid),
    Broker.

%% @doc Ends the broker at once (kill -9): no test waits for Kafka's
%% controlled shutdown.
stop(#{os_pid := OsPid}) ->
    os:cmd("kill -9 " ++ OsPid ++ " 2>/dev/null"),
    ok.

%% @doc Ends every broker this VM started (cleanup after a test case).
stop_all() ->
    kafka_bridge_test_lib:stop_all_os_processes().

%% @doc Where clients connect: the listener named by the broker's
%% `client_listener' (a suite sets it to read a secured broker over the
%% listener it tests), else PLAINTEXT.
bootstrap(Broker) ->
    bootstrap(Broker, maps:get(client_listener, Broker, plaintext)).

%% A broker not started yet is `#{port => Port}'.
bootstrap(#{brokers := Brokers}, Name) ->
    iolist_to_binary(lists:join(",", [bootstrap(B, Name) || B <- Brokers]));
bootstrap(Broker = #{port := Port}, Name) ->
    Listeners = maps:get(listeners, Broker, #{plaintext => Port}),
    iolist_to_binary(["127.0.0.1:", integer_to_list(maps:get(Name, Listeners))]).

create_topic(Broker, Name) ->
    create_topic(Broker, Name, 3).

create_topic(Broker, Name, Partitions) ->
    create_topic(Broker, Name, Partitions, []).

%% @doc Creates Name with Partitions and topic configs [{Key, Value}]
%% (e.g. `{"max.message.bytes", "2000"}'), waiting until it is created.
create_topic(Broker, Name, Partitions, Configs) ->
    admin(Broker, ["create-topic", Name, integer_to_list(Partitions)
                   | [[K, "=", V] || {K, V} <- Configs]]).

%% @doc Runs `kafka_tool admin BOOTSTRAP Args...' against the PLAINTEXT
%% listener (see tools/kafka_tool/src/admin.rs): ok, or an error with what
%% it said.
admin(Broker, Args) ->
    _ = admin_output(Broker, Args),
    ok.

%% @doc Each partition of Topic as `{Partition, Leader, Replicas, Isr,
%% End}' (Leader -1 when it has none; End its high watermark, -1 when its
%% leader did not answer), as the metadata of the first broker to answer
%% has them.
describe_topic(Broker, Topic) ->
    Out = admin_output(Broker, ["describe-topic", Topic]),
    Ids = fun("") -> []; (List) -> [list_to_integer(I) || I <- string:split(List, ",", all)] end,
    lists:sort([{list_to_integer(P), list_to_integer(L), Ids(R), Ids(I), list_to_integer(E)}
                || Line <- string:split(Out, "\n", all),
                   [P, L, R, I, E] <- [string:lexemes(Line, " ")]]).

%% What `kafka_tool admin' printed, or an error with it.
admin_output(Broker, Args) ->
    Cmd = ["'", kafka_bridge_test_lib:kafka_tool(), "' admin ", bootstrap(Broker, plaintext), quoted(Args)],
    case kafka_bridge_test_lib:shell(Cmd) of
        {ok, Out} -> Out;
        {error, Out} -> error({kafka_admin_failed, Args, Out})
    end.

%% @doc Runs one of Kafka's own command-line classes (e.g.
%% "org.apache.kafka.tools.AclCommand") with Args from the same jars;
%% returns its output, or an error with it.
kafka_class(Broker, Class, Args) ->
    Cmd = [java(), " -cp '", classpath(), "' -Dlog4j2.configurationFile='", log4j_config(Broker), "' ", Class,
           quoted(Args)],
    case kafka_bridge_test_lib:shell(Cmd) of
        {ok, Out} -> Out;
        {error, Out} -> error({kafka_command_failed, Class, Args, Out})
    end.

quoted(Args) ->
    [[" '", A, "'"] || A <- Args].

%% @doc The record batches of Topic as the broker wrote them to disk
%% (Kafka's DumpLogSegments): per batch `{Partition, ProducerId,
%% BaseSequence, LastSequence}'. An idempotent producer's batches carry its
%% producer id and gapless sequences; others carry -1.
log_batches(Broker = #{dir := Dir}, Topic) ->
    Pattern = filename:join([Dir, "data", iolist_to_binary([Topic, "-*"]), "*.log"]),
    Segments = filelib:wildcard(unicode:characters_to_list(Pattern)),
    lists:append([segment_batches(Broker, Segment) || Segment <- lists:sort(Segments)]).

segment_batches(Broker, Segment) ->
    Partition = list_to_integer(lists:last(string:split(filename:basename(filename:dirname(Segment)), "-", trailing))),
    Out = kafka_class(Broker, "kafka.tools.DumpLogSegments", ["--files", Segment]),
    {match, Batches} = re:run(Out, "baseSequence: (-?\\d+) lastSequence: (-?\\d+) producerId: (-?\\d+)",
                              [global, {capture, all_but_first, list}]),
    [{Partition, list_to_integer(P), list_to_integer(B), list_to_integer(L)} || [B, L, P] <- Batches].

%%--------------------------------------------------------------------
%% Set-up
%%--------------------------------------------------------------------

properties(Broker = #{dir := Dir, listeners := Listeners, controller_port := ControllerPort,
                      node_id := NodeId, voters := Voters}) ->
    Address = fun(Name, Port) -> [string:uppercase(atom_to_list(Name)), "://127.0.0.1:", integer_to_list(Port)] end,
    Advertised = lists:join(",", [Address(N, P) || {N, P} <- lists:sort(maps:to_list(Listeners))]),
    Defaults =
        [{"process.roles", "broker,controller"},
         {"node.id", integer_to_list(NodeId)},
         {"controller.quorum.voters", Voters},
         {"controller.listener.names", "CONTROLLER"},
         {"inter.broker.listener.name", "PLAINTEXT"},
         {"listeners", [Advertised, ",", Address('CONTROLLER', ControllerPort)]},
         {"advertised.listeners", Advertised},
         {"listener.security.protocol.map",
          "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,MTLS:SSL,SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,"
          "OAUTH:SASL_PLAINTEXT"},
         {"log.dirs", filename:join(Dir, "data")},
         {"num.partitions", "1"},
         %% As managed services ship it: a topic must exist or be created.
         {"auto.create.topics.enable", "false"},
         {"offsets.topic.replication.factor", "1"},
         {"offsets.topic.num.partitions", "1"},
         {"transaction.state.log.replication.factor", "1"},
         {"transaction.state.log.min.isr", "1"},
         {"transaction.state.log.num.partitions", "1"},
         {"group.initial.rebalance.delay.ms", "0"},
         {"super.users", "User:ANONYMOUS"}]
        ++ security_properties(Broker) ++ oauth_properties(Broker),
    Overrides = maps:get(properties, Broker, []),
    [{K, V} || {K, V} <- Defaults, not lists:keymember(K, 1, Overrides)] ++ Overrides.

security_properties(#{secured := Certs, dir := Dir} = Broker) ->
    #{server_cert := Cert, server_key := Key, ca := Ca} = Certs,
    %% A PEM keystore is the key and its chain in one file.
    Keystore = filename:join(Dir, "server-keystore.pem"),
    {ok, KeyPem} = file:read_file(Key),
    {ok, CertPem} = file:read_file(Cert),
    ok = file:write_file(Keystore, [KeyPem, CertPem]),
    Users = maps:get(users, Broker, []),
    Plain = ["org.apache.kafka.common.security.plain.PlainLoginModule required",
             [[" user_", U, "=\"", P, "\""] || {U, P} <- Users], ";"],
    Jaas = [{["listener.name.", L, ".", M, ".sasl.jaas.config"], J}
            || L <- ["sasl_ssl", "sasl_plaintext"],
               {M, J} <- [{"plain", Plain}, {"scram-sha-256", ?JAAS_SCRAM}, {"scram-sha-512", ?JAAS_SCRAM}]],
    [{"ssl.keystore.type", "PEM"},
     {"ssl.keystore.location", Keystore},
     {"ssl.truststore.type", "PEM"},
     {"ssl.truststore.location", Ca},
     {"listener.name.mtls.ssl.client.auth", "required"},
     {"sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"}
     | Jaas];
security_properties(_) ->
    [].

oauth_properties(#{oauthbearer := #{jwks_url := Jwks, audience := Audience, issuer := Issuer}}) ->
    Prefix = "listener.name.oauth.",
    [{Prefix ++ "sasl.enabled.mechanisms", "OAUTHBEARER"},
     {Prefix ++ "oauthbearer.sasl.jaas.config",
      "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;"},
     {Prefix ++ "oauthbearer.sasl.server.callback.handler.class",
      "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"},
     %% Kafka 4.1's default validator (DefaultJwtValidator, built without a
     %% key resolver) checks only a token's shape, not its signature,
     %% audience or issuer: the broker-side one is named.
     {"sasl.oauthbearer.jwt.validator.class", "org.apache.kafka.common.security.oauthbearer.BrokerJwtValidator"},
     {"sasl.oauthbearer.jwks.endpoint.url", Jwks},
     {"sasl.oauthbearer.expected.audience", Audience},
     {"sasl.oauthbearer.expected.issuer", Issuer}];
oauth_properties(_) ->
    [].

%% Kafka 4 fetches only URLs this system property allows.
jvm_properties(#{oauthbearer := #{jwks_url := Jwks}}) ->
    [" -Dorg.apache.kafka.sasl.oauthbearer.allowed.urls='", Jwks, "'"];
jvm_properties(_) ->
    [].

write_properties(Broker = #{dir := Dir}) ->
    ok = file:write_file(log4j_config(Broker),
                         "status = error\n"
                         "appender.out.type = Console\nappender.out.name = OUT\n"
                         "appender.out.layout.type = PatternLayout\n"
                         "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
                         "rootLogger.level = warn\nrootLogger.appenderRef.out.ref = OUT\n"),
    Lines = [[K, "=", V, "\n"] || {K, V} <- properties(Broker)],
    file:write_file(filename:join(Dir, "server.properties"), Lines).

log4j_config(#{dir := Dir}) ->
    filename:join(Dir, "log4j2.properties").

%% The storage directory, with the SCRAM credentials of every user: Kafka
%% keeps them in its metadata log, where formatting can put them.
format(Broker = #{dir := Dir}) ->
    Scram = [["--add-scram", "SCRAM-SHA-" ++ Bits ++ "=[name=" ++ U ++ ",password=" ++ P ++ "]"]
             || maps:is_key(secured, Broker), {U, P} <- maps:get(users, Broker, []), Bits <- ["256", "512"]],
    _ = kafka_class(Broker, "kafka.tools.StorageTool",
                    ["format", "-t", ?CLUSTER_ID, "-c", filename:join(Dir, "server.properties")
                     | lists:append(Scram)]),
    ok.

spawn_jvm(Broker = #{dir := Dir, heap_mb := Heap}) ->
    Cmd = ["exec ", java(), " -Xms256m -Xmx", integer_to_list(Heap), "m -XX:+UseG1GC -Djava.awt.headless=true",
           " -Dlog4j2.configurationFile='", log4j_config(Broker), "'", jvm_properties(Broker),
           " -cp '", classpath(), "' kafka.Kafka '", filename:join(Dir, "server.properties"), "'",
           " >>'", log_file(Broker), "' 2>&1 & echo $!"],
    kafka_bridge_test_lib:spawn_os_process(Cmd).

%% OsPid once the broker's PLAINTEXT port accepts.
wait_listening(Broker = #{port := Port}, OsPid) ->
    case kafka_bridge_test_lib:wait_until(fun() -> port_open(Port) end, 60000) of
        ok ->
            OsPid;
        timeout ->
            {ok, Out} = file:read_file(log_file(Broker)),
            ct:log("Kafka on port ~b did not open it; its log:~n~s", [Port, Out]),
            error({broker_not_listening, Port})
    end.

log_file(#{dir := Dir}) ->
    filename:join(Dir, "kafka.log").

java() ->
    case os:find_executable("java") of
        false -> error(java_not_found);
        Java -> Java
    end.

classpath() ->
    filename:join([kafka_bridge_test_lib:project_root(), "_build", "kafka", "lib", "*"]).

port_open(Port) ->
    case gen_tcp:connect({127, 0, 0, 1}, Port, [], 200) of
        {ok, S} -> gen_tcp:close(S), true;
        {error, _} -> false
    end.
