%% @doc Shared helpers for the suites: a real tansu broker on a free
%% loopback port, topic creation, reading topics back with kafka_tool (an
%% rdkafka 0.39 consumer), and EMQX-shaped hook arguments.
-module(kafka_bridge_test_lib).

-export([start_broker/1, start_broker/2, start_broker/3, relaunch/2, spawn_os_process/1, free_port/0,
         make_certificates/2, secured_broker/4, stop_broker/1, stop_all_brokers/0, kill_broker/1, restart_broker/1,
         bootstrap/1, create_topic/2, create_topic/3, consume/3, consume/4, consume/5, values/1, ids/1,
         capture_logs/0, captured_logs/0, log/2, deep_merge/2,
         start_bridge/1, stop_bridge/0, set_plugin_config/1, name_vsn/0, config/2, wait_until/2, wait_for_delivered/2,
         message/3, message/4, client_info/1, conn_info/1, project_root/0, kafka_tool/0, unique/1, plugin_node/2,
         thread_count/0, producer_threads/0, producer_threads/1, publish/1, publish_range/3, metric/1]).

-define(APP, emqx_plugin_kafka_bridge).

%%--------------------------------------------------------------------
%% Broker
%%--------------------------------------------------------------------

%% @doc Starts tansu with in-memory storage on a free loopback port.
start_broker(Dir) ->
    start_broker(Dir, "memory://tansu/").

%% @doc Storage is "memory://tansu/" or "sqlite://FILE" (relative to Dir).
start_broker(Dir, Storage) ->
    start_broker(Dir, Storage, free_port()).

start_broker(Dir, Storage, Port) ->
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Broker = #{port => Port, dir => Dir, storage => Storage},
    Broker#{os_pid => launch(Broker)}.

%% @doc Restarts Broker with Options: `advertised_port' (clients are sent
%% there, e.g. to a TLS front) and `authentication' (SCRAM required).
relaunch(Broker = #{os_pid := OldPid}, Options) ->
    stop_broker(Broker),
    %% tansu closes its port before it has let go of its storage: the new
    %% one starts once the old one has exited.
    ok = wait_until(fun() -> not os_process_running(OldPid) end, 10000),
    ok = wait_until(fun() -> not port_open(maps:get(port, Broker)) end, 10000),
    Next = maps:merge(Broker, Options),
    Next#{os_pid => launch(Next)}.

%% Exited processes of ours stay zombies (nobody reaps them here).
os_process_running(OsPid) ->
    case file:read_file("/proc/" ++ OsPid ++ "/stat") of
        {ok, Stat} -> nomatch =:= binary:match(Stat, <<") Z ">>);
        {error, _} -> false
    end.

launch(Broker = #{port := Port, dir := Dir, storage := Storage}) ->
    Url = "tcp://127.0.0.1:" ++ integer_to_list(Port),
    Advertised = "tcp://127.0.0.1:" ++ integer_to_list(maps:get(advertised_port, Broker, Port)),
    Auth = case maps:get(authentication, Broker, false) of true -> " --authentication"; false -> "" end,
    Log = filename:join(Dir, "tansu-" ++ integer_to_list(Port) ++ ".log"),
    Cmd = io_lib:format("cd '~s' && exec '~s' broker --listener-url ~s --advertised-listener-url ~s "
                        "--storage-engine '~s'~s >>'~s' 2>&1 & echo $!",
                        [Dir, tansu(), Url, Advertised, Storage, Auth, Log]),
    OsPid = spawn_os_process(Cmd),
    case wait_until(fun() -> port_open(Port) end, 15000) of
        ok ->
            OsPid;
        timeout ->
            %% Say why in the test log before failing.
            {ok, Out} = file:read_file(Log),
            ct:log("tansu on port ~b did not open it (process running: ~p); its log:~n~s",
                   [Port, os_process_running(OsPid), Out]),
            error({broker_not_listening, Port})
    end.

%% @doc Runs Cmd (which must end in `& echo $!') and remembers its OS pid
%% VM-wide, for stop_all_brokers/0: test cases run in processes that do
%% not outlive them.
spawn_os_process(Cmd) ->
    OsPid = string:trim(os:cmd(lists:flatten(Cmd))),
    persistent_term:put({?MODULE, brokers}, [OsPid | persistent_term:get({?MODULE, brokers}, [])]),
    OsPid.

stop_broker(#{os_pid := OsPid}) ->
    os:cmd("kill " ++ OsPid ++ " 2>/dev/null"),
    ok.

%% @doc Stops every broker this VM started (cleanup after a test case).
stop_all_brokers() ->
    [os:cmd("kill " ++ OsPid ++ " 2>/dev/null") || OsPid <- persistent_term:get({?MODULE, brokers}, [])],
    persistent_term:put({?MODULE, brokers}, []),
    ok.

%% @doc kill -9, as a crash would.
kill_broker(Broker = #{os_pid := OsPid, port := Port}) ->
    os:cmd("kill -9 " ++ OsPid),
    ok = wait_until(fun() -> not port_open(Port) end, 10000),
    Broker.

restart_broker(Broker) ->
    Broker#{os_pid => launch(Broker)}.

%% @doc Where clients connect: the advertised port (a TLS front) if any.
bootstrap(Broker = #{port := Port}) ->
    iolist_to_binary(["127.0.0.1:", integer_to_list(maps:get(advertised_port, Broker, Port))]).

create_topic(Broker, Name) ->
    create_topic(Broker, Name, 3).

create_topic(#{port := Port}, Name, Partitions) ->
    Cmd = io_lib:format("'~s' topic create '~s' --partitions ~b --broker tcp://127.0.0.1:~b 2>&1; echo rc=$?",
                        [tansu(), Name, Partitions, Port]),
    Out = os:cmd(lists:flatten(Cmd)),
    case string:find(Out, "rc=0") of
        nomatch -> error({create_topic_failed, Name, Out});
        _ -> ok
    end.

tansu() ->
    case os:find_executable("tansu") of
        false -> filename:join([os:getenv("HOME"), ".cargo", "bin", "tansu"]);
        Path -> Path
    end.

free_port() ->
    {ok, Socket} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(Socket),
    gen_tcp:close(Socket),
    Port.

port_open(Port) ->
    case gen_tcp:connect({127, 0, 0, 1}, Port, [], 200) of
        {ok, S} -> gen_tcp:close(S), true;
        {error, _} -> false
    end.

%%--------------------------------------------------------------------
%% Secured brokers: certificates from the openssl CLI, tansu behind stunnel4
%%--------------------------------------------------------------------

openssl(Dir, Args) ->
    Out = os:cmd(lists:flatten(["cd '", Dir, "' && openssl ", Args, " 2>&1; echo rc=$?"])),
    case string:find(Out, "rc=0") of
        nomatch -> error({openssl, Args, Out});
        _ -> ok
    end.

%% @doc A CA, a server certificate for 127.0.0.1 and localhost, a client
%% certificate (its key also encrypted with KeyPassword), an unrelated CA:
%% a map of their file names.
make_certificates(Dir, KeyPassword) ->
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes",
    ok = openssl(Dir, ["req -x509 ", Key, " -keyout ca.key -out ca.pem -days 2 -subj /CN=bridge-test-ca"]),
    ok = openssl(Dir, ["req -x509 ", Key, " -keyout other_ca.key -out other_ca.pem -days 2 -subj /CN=other-ca"]),
    ok = file:write_file(filename:join(Dir, "server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n"),
    ok = openssl(Dir, ["req ", Key, " -keyout server.key -out server.csr -subj /CN=localhost"]),
    ok = openssl(Dir, "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
                      "-extfile server.ext -out server.pem"),
    ok = openssl(Dir, ["req ", Key, " -keyout client.key -out client.csr -subj /CN=bridge-client"]),
    ok = openssl(Dir, "x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out client.pem"),
    ok = openssl(Dir, ["pkey -in client.key -aes256 -passout pass:", binary_to_list(KeyPassword), " -out client_encrypted.key"]),
    maps:from_list([{Name, filename:join(Dir, File)}
                    || {Name, File} <- [{ca, "ca.pem"}, {other_ca, "other_ca.pem"}, {server_cert, "server.pem"},
                                        {server_key, "server.key"}, {client_cert, "client.pem"},
                                        {client_key, "client.key"}, {client_encrypted_key, "client_encrypted.key"}]]).

%% @doc tansu on sqlite (topics and users survive its restart), first in
%% the clear to create them, then behind stunnel with the TLS port
%% advertised. Options: `mutual' (stunnel asks for a client certificate),
%% `scram_password' (users alice256 and alice512 with it, and SCRAM
%% required).
secured_broker(Dir, Certs, Topics, Options) ->
    Plain = start_broker(Dir, "sqlite://tansu.db"),
    [ok = create_topic(Plain, T) || T <- Topics],
    Password = maps:get(scram_password, Options, undefined),
    Password =:= undefined orelse
        [ok = create_user(Plain, User, Mechanism, Password)
         || {User, Mechanism} <- [{"alice256", "scram256"}, {"alice512", "scram512"}]],
    TlsPort = free_port(),
    ok = start_stunnel(Dir, Certs, TlsPort, maps:get(port, Plain), maps:get(mutual, Options, false)),
    relaunch(Plain, #{advertised_port => TlsPort, authentication => Password =/= undefined}).

create_user(#{port := Port}, User, Mechanism, Password) ->
    Cmd = io_lib:format("~s user create ~s '~s' --mechanism ~s --broker tcp://127.0.0.1:~b 2>&1; echo rc=$?",
                        [tansu(), User, Password, Mechanism, Port]),
    Out = os:cmd(lists:flatten(Cmd)),
    case string:find(Out, "rc=0") of
        nomatch -> error({create_user, User, Out});
        _ -> ok
    end.

start_stunnel(Dir, #{server_cert := Cert, server_key := Key, ca := Ca}, Accept, Connect, Mutual) ->
    Conf = filename:join(Dir, "stunnel.conf"),
    Verify = case Mutual of
                 true -> ["verifyChain = yes\nrequireCert = yes\nCAfile = ", Ca, "\n"];
                 false -> ""
             end,
    ok = file:write_file(Conf, ["foreground = yes\npid =\n[kafka]\n",
                                "accept = 127.0.0.1:", integer_to_list(Accept), "\n",
                                "connect = 127.0.0.1:", integer_to_list(Connect), "\n",
                                "cert = ", Cert, "\nkey = ", Key, "\n", Verify]),
    Log = filename:join(Dir, "stunnel.log"),
    _ = spawn_os_process(["stunnel4 '", Conf, "' >>'", Log, "' 2>&1 & echo $!"]),
    wait_until(fun() -> port_open(Accept) end, 10000).

%%--------------------------------------------------------------------
%% Reading Kafka
%%--------------------------------------------------------------------

consume(Broker, Topic, Expect) ->
    consume(Broker, Topic, Expect, 5000).

%% @doc Every record of Topic, as maps: partition, offset, key, value,
%% headers and json (the decoded value, or not_json). Reads until Expect
%% records came and every partition was read to its end, or none came for
%% IdleMs: a duplicate or a stray record shows in the count.
consume(Broker, Topic, Expect, IdleMs) ->
    consume(Broker, Topic, Expect, IdleMs, []).

%% @doc The same with librdkafka properties ("key=value") for the reader,
%% e.g. the TLS and SASL settings of a secured broker.
consume(Broker, Topic, Expect, IdleMs, Properties) ->
    Out = filename:join(maps:get(dir, Broker), "consume-" ++ integer_to_list(erlang:unique_integer([positive]))),
    Props = lists:flatten([[" '", P, "'"] || P <- Properties]),
    Cmd = io_lib:format("'~s' consume ~s '~s' ~b ~b '~s'~s 2>&1",
                        [kafka_tool(), bootstrap(Broker), Topic, Expect, IdleMs, Out, Props]),
    case os:cmd(lists:flatten(Cmd)) of
        "" -> ok;
        Noise -> ct:log("kafka_tool: ~s", [Noise])
    end,
    {ok, Bin} = file:read_file(Out),
    [#{partition => P, offset => O, key => K, value => V, headers => H, json => J}
     || {record, P, O, K, V, H, J} <- binary_to_term(Bin)].

values(Records) ->
    [J || #{json := J} <- Records].

%% @doc The `id' field of each record's JSON, as an integer.
ids(Records) ->
    [binary_to_integer(maps:get(<<"id">>, J), 16) || J <- values(Records)].

%% @doc A fresh VM with OTP and the EMQX stand-ins only, as an EMQX node
%% before any plugin: packages go in InstallDir, plugin data (and the
%% working directory, where a relative spool lands) in DataDir.
plugin_node(InstallDir, DataDir) ->
    ok = filelib:ensure_dir(filename:join(InstallDir, "x")),
    ok = filelib:ensure_dir(filename:join(DataDir, "x")),
    TestEbin = filename:dirname(code:which(emqx_plugins)),
    {ok, Peer, _} = peer:start(#{connection => standard_io, args => ["-pa", TestEbin]}),
    ok = peer:call(Peer, emqx_plugins, set_dirs, [InstallDir, DataDir]),
    %% Where the stand-in finds kafka_tool (it parses config.hocon).
    true = peer:call(Peer, os, putenv, ["PROJECT_ROOT", project_root()]),
    ok = peer:call(Peer, file, set_cwd, [DataDir]),
    Peer.

%% @doc The test tool (tools/kafka_tool), built like the NIF by `make'.
kafka_tool() ->
    filename:join([project_root(), "target", "x86_64-unknown-linux-gnu", "release", "kafka_tool"]).

project_root() ->
    case os:getenv("PROJECT_ROOT") of
        Root when is_list(Root), Root =/= "" -> Root;
        _ -> filename:absname(filename:join([code:lib_dir(?APP), "..", "..", "..", ".."]))
    end.

%%--------------------------------------------------------------------
%% Bridge
%%--------------------------------------------------------------------

%% @doc A config for Broker, with Overrides merged in (deeply).
config(Broker, Overrides) ->
    deep_merge(#{<<"kafka">> => #{<<"bootstrap_servers">> => bootstrap(Broker)}}, Overrides).

deep_merge(A, B) when is_map(A), is_map(B) ->
    maps:fold(fun(K, V, Acc) ->
                      case Acc of
                          #{K := Old} when is_map(Old), is_map(V) -> Acc#{K => deep_merge(Old, V)};
                          _ -> Acc#{K => V}
                      end
              end, A, B).

%% @doc Starts the plugin with Config as the config EMQX holds for it.
start_bridge(Config) ->
    set_plugin_config(Config),
    application:ensure_all_started(?APP).

%% @doc What emqx_plugins (the stand-in) returns as the plugin's config.
set_plugin_config(Config) ->
    emqx_plugins:set_config(name_vsn(), Config).

name_vsn() ->
    <<"emqx_plugin_kafka_bridge-0.1.0">>.

stop_bridge() ->
    application:stop(?APP).

wait_until(Fun, Timeout) when Timeout =< 0 ->
    case Fun() of true -> ok; _ -> timeout end;
wait_until(Fun, Timeout) ->
    case Fun() of
        true -> ok;
        _ -> timer:sleep(50), wait_until(Fun, Timeout - 50)
    end.

%% @doc Waits until `delivered + failed' reaches N, returns the metrics.
wait_for_delivered(N, Timeout) ->
    wait_until(fun() ->
                       M = emqx_plugin_kafka_bridge:metrics(),
                       maps:get(delivered, M, 0) + maps:get(failed, M, 0) >= N
               end, Timeout),
    emqx_plugin_kafka_bridge:metrics().

%%--------------------------------------------------------------------
%% EMQX-shaped terms (see shared/emqx-plugin-api.md)
%%--------------------------------------------------------------------

message(From, Topic, Payload) ->
    message(From, Topic, Payload, #{}).

%% @doc A #message{} record: {message, Id, QoS, From, Flags, Headers, Topic,
%% Payload, Timestamp, Extra}. Opts may set qos, flags, headers, id,
%% timestamp and extra.
message(From, Topic, Payload, Opts) ->
    {message,
     maps:get(id, Opts, crypto:strong_rand_bytes(16)),
     maps:get(qos, Opts, 1),
     From,
     maps:get(flags, Opts, #{dup => false, retain => false}),
     maps:get(headers, Opts, #{username => <<"user-", From/binary>>,
                               peerhost => {192, 0, 2, 10},
                               proto_ver => 5,
                               protocol => mqtt,
                               peername => {{192, 0, 2, 10}, 51234},
                               properties => #{}}),
     Topic,
     Payload,
     maps:get(timestamp, Opts, erlang:system_time(millisecond)),
     maps:get(extra, Opts, #{})}.

%% @doc Runs the message.publish hook on Message, as EMQX does.
publish(Message) ->
    emqx_hooks:run_fold('message.publish', [], Message).

%% @doc One of the running bridge's metrics.
metric(Name) ->
    maps:get(Name, emqx_plugin_kafka_bridge:metrics()).

%% @doc Publishes ids From..To through the message.publish hook; each
%% message's id is its number, which ids/1 reads back.
publish_range(From, To, Topic) ->
    [publish(message(<<"c", (integer_to_binary(I rem 97))/binary>>, Topic,
                     <<"payload-", (integer_to_binary(I))/binary>>, #{id => <<I:128>>}))
     || I <- lists:seq(From, To)],
    ok.

client_info(ClientId) ->
    #{zone => default, protocol => mqtt, peerhost => {198, 51, 100, 7}, sockport => 1883,
      clientid => ClientId, username => <<"user-", ClientId/binary>>, is_bridge => false,
      is_superuser => false, mountpoint => undefined, cn => <<"cn">>, client_attrs => #{}}.

conn_info(ClientId) ->
    #{socktype => tcp, sockname => {{127, 0, 0, 1}, 1883}, peername => {{198, 51, 100, 7}, 40000},
      conn_mod => emqx_connection, proto_name => <<"MQTT">>, proto_ver => 5, clean_start => true,
      clientid => ClientId, username => <<"user-", ClientId/binary>>, conn_props => #{},
      connected_at => 1700000000123, keepalive => 60, receive_maximum => 32,
      expiry_interval => 7200000}.

%% @doc A fresh name for a topic or client.
unique(Prefix) ->
    iolist_to_binary([Prefix, "_", integer_to_list(erlang:unique_integer([positive]))]).

%% @doc Threads of this OS process (the VM), from /proc/self/task.
thread_count() ->
    {ok, Tasks} = file:list_dir("/proc/self/task"),
    length(Tasks).

%% @doc Threads of this VM running the bridge's producer loop (their name,
%% "kafka_bridge_producer", is cut to 15 characters by the kernel).
producer_threads() ->
    {ok, Tasks} = file:list_dir("/proc/self/task"),
    length([T || T <- Tasks,
                 {ok, <<"kafka_bridge_pr", _/binary>>} <- [file:read_file("/proc/self/task/" ++ T ++ "/comm")]]).

%% @doc producer_threads/0 once it is N, or after 2 s: a new thread names
%% itself when it first runs, which on a busy machine may be after the
%% start that spawned it has returned.
producer_threads(N) ->
    _ = wait_until(fun() -> producer_threads() =:= N end, 2000),
    producer_threads().

%%--------------------------------------------------------------------
%% Log capture: a logger handler forwarding the bridge's lines here.
%%--------------------------------------------------------------------

capture_logs() ->
    _ = logger:remove_handler(kafka_bridge_capture),
    ok = logger:add_handler(kafka_bridge_capture, ?MODULE, #{config => #{pid => self()}}).

%% logger handler callback
log(#{msg := Msg} = Event, #{config := #{pid := Pid}}) ->
    Text = case Msg of
               {string, S} -> S;
               {report, R} when is_map(R) -> report_text(R);
               {report, R} -> io_lib:format("~p", [R]);
               {Format, Args} -> io_lib:format(Format, Args)
           end,
    %% The bridge's reports carry its name in their domain, not their text.
    Domain = maps:get(domain, maps:get(meta, Event, #{}), []),
    Prefix = case lists:member(emqx_plugin_kafka_bridge, Domain) of
                 true -> "emqx_plugin_kafka_bridge ";
                 false -> ""
             end,
    Pid ! {captured_log, unicode:characters_to_binary([Prefix, Text])}.

%% A report as logger's text formatter shows it: key: value, text as text.
report_text(Report) ->
    lists:join(", ", [[atom_to_list(K), ": ", value_text(V)] || {K, V} <- lists:sort(maps:to_list(Report))]).

value_text(V) when is_binary(V) -> V;
value_text(V) when is_atom(V) -> atom_to_list(V);
value_text(V) -> case io_lib:printable_unicode_list(V) of
                     true -> V;
                     false -> io_lib:format("~0p", [V])
                 end.

%% @doc The captured lines that mention the bridge.
captured_logs() ->
    receive
        {captured_log, Text} ->
            case binary:match(Text, <<"emqx_plugin_kafka_bridge">>) of
                nomatch -> captured_logs();
                _ -> [Text | captured_logs()]
            end
    after 0 -> []
    end.
