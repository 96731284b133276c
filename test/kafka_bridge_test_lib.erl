%% @doc Shared helpers for the suites: reading topics back with kafka_tool
%% (an rdkafka 0.39 consumer), certificates, the bridge's start and stop,
%% and EMQX-shaped hook arguments. Brokers are kafka_bridge_broker's.
-module(kafka_bridge_test_lib).

-export([spawn_os_process/1, stop_all_os_processes/0, shell/1, free_port/0, make_certificates/2,
         consume/3, consume/4, consume/5, values/1, ids/1, assert_once_in_order/2,
         capture_logs/0, captured_logs/0, assert_not_shown/1, log/2, deep_merge/2,
         start_bridge/1, stop_bridge/0, set_plugin_config/1, name_vsn/0, config/2, wait_until/2, wait_for_delivered/2,
         message/3, message/4, client_info/1, conn_info/1, project_root/0, kafka_tool/0, unique/1, plugin_node/2,
         thread_count/0, producer_threads/0, producer_threads/1, publish/1, publish_range/3, metric/1,
         case_dirs/1, long_schedules/2, placeholders/1, json_template/1, header_templates/1, fire_every_hook/1]).

-include_lib("stdlib/include/assert.hrl").

-define(APP, emqx_plugin_kafka_bridge).

%%--------------------------------------------------------------------
%% OS processes (brokers: kafka_bridge_broker) and certificates
%%--------------------------------------------------------------------

%% @doc Runs Cmd (which must end in `& echo $!') and remembers its OS pid
%% VM-wide, for stop_all_os_processes/0: test cases run in processes that
%% do not outlive them.
spawn_os_process(Cmd) ->
    OsPid = string:trim(os:cmd(binary_to_list(iolist_to_binary(Cmd)))),
    persistent_term:put({?MODULE, os_pids}, [OsPid | persistent_term:get({?MODULE, os_pids}, [])]),
    OsPid.

%% @doc kill -9 of every process spawn_os_process/1 started in this VM.
stop_all_os_processes() ->
    [os:cmd("kill -9 " ++ OsPid ++ " 2>/dev/null") || OsPid <- persistent_term:get({?MODULE, os_pids}, [])],
    persistent_term:put({?MODULE, os_pids}, []),
    ok.

free_port() ->
    {ok, Socket} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(Socket),
    gen_tcp:close(Socket),
    Port.

%% @doc Runs Cmd (an iolist) in a shell: {ok, Output} when it exits 0,
%% else {error, Output}; Output has its standard error too.
shell(Cmd) ->
    Out = os:cmd(binary_to_list(iolist_to_binary([Cmd, " 2>&1; echo rc=$?"]))),
    case string:find(Out, "rc=0") of
        nomatch -> {error, Out};
        _ -> {ok, Out}
    end.

openssl(Dir, Args) ->
    case shell(["cd '", Dir, "' && openssl ", Args]) of
        {ok, _} -> ok;
        {error, Out} -> error({openssl, Args, Out})
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

%%--------------------------------------------------------------------
%% Reading Kafka
%%--------------------------------------------------------------------

consume(Broker, Topic, Expect) ->
    consume(Broker, Topic, Expect, 5000).

%% @doc Every record of Topic, as maps: partition, offset, key, value,
%% headers, json (the decoded value, or not_json) and timestamp (ms). Reads until Expect
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
                        [kafka_tool(), kafka_bridge_broker:bootstrap(Broker), Topic, Expect, IdleMs, Out, Props]),
    case os:cmd(lists:flatten(Cmd)) of
        "" -> ok;
        Noise -> ct:log("kafka_tool: ~s", [Noise])
    end,
    {ok, Bin} = file:read_file(Out),
    [#{partition => P, offset => O, key => K, value => V, headers => H, json => J, timestamp => T}
     || {record, P, O, K, V, H, J, T} <- binary_to_term(Bin)].

values(Records) ->
    [J || #{json := J} <- Records].

%% @doc The `id' field of each record's JSON, as an integer.
ids(Records) ->
    [binary_to_integer(maps:get(<<"id">>, J), 16) || J <- values(Records)].

%% @doc Records hold each of Ids exactly once, and each partition holds
%% its ids in increasing order: ids were published in increasing order, and
%% a key always maps to one partition, so order per key holds too.
assert_once_in_order(Records, Ids) ->
    Read = ids(Records),
    Duplicates = length(Read) - length(lists:usort(Read)),
    OutOfOrder = [P || P <- lists:usort([P || #{partition := P} <- Records]),
                       begin
                           InPartition = [R || R = #{partition := P1} <- Records, P1 =:= P],
                           Sorted = ids(lists:sort(fun(#{offset := A}, #{offset := B}) -> A =< B end, InPartition)),
                           Sorted =/= lists:usort(Sorted)
                       end],
    ct:comment("~b records read, ~b duplicates, partitions out of order: ~w", [length(Read), Duplicates, OutOfOrder]),
    [] = ordsets:subtract(Ids, lists:usort(Read)),
    {0, []} = {Duplicates, OutOfOrder},
    [] = ordsets:subtract(lists:usort(Read), Ids),
    ok.

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
    deep_merge(#{<<"kafka">> => #{<<"bootstrap_servers">> => kafka_bridge_broker:bootstrap(Broker)}}, Overrides).

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

%% @doc Fires each hook point once, the way EMQX calls them, with the same
%% arguments every time; the message (published 1700000000999) carries
%% UserProperties.
fire_every_hook(UserProperties) ->
    Sub = client_info(<<"sub-1">>),
    Msg = message(<<"pub-1">>, <<"room/1/temp">>, <<"21.5">>,
                  #{id => <<16#ab:128>>, qos => 1, timestamp => 1700000000999,
                    headers => #{username => <<"pub-user">>, peerhost => {10, 1, 2, 3},
                                 properties => #{'User-Property' => UserProperties,
                                                 'Content-Type' => <<"text/plain">>},
                                 unknown_header => {some, thing}}}),
    emqx_hooks:run('client.connected', [client_info(<<"conn-1">>), conn_info(<<"conn-1">>)]),
    emqx_hooks:run('client.disconnected', [client_info(<<"conn-1">>), keepalive_timeout,
                                           (conn_info(<<"conn-1">>))#{disconnected_at => 1700000005000}]),
    emqx_hooks:run('session.subscribed', [Sub, <<"room/+/temp">>, #{qos => 1, nl => 0, rap => 0, rh => 0, is_new => true}]),
    emqx_hooks:run('session.unsubscribed', [Sub, <<"room/+/temp">>, #{qos => 1}]),
    Msg = publish(Msg),
    Msg = emqx_hooks:run_fold('message.delivered', [Sub], Msg),
    emqx_hooks:run('message.acked', [Sub, Msg]),
    emqx_hooks:run('message.dropped', [Msg, #{node => node()}, no_subscribers]),
    ok.

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

%% @doc A test case's own directories under its suite's priv_dir, added
%% to Config: `dir' for its broker, `spool_dir' for the bridge's spool.
case_dirs(Config) ->
    Priv = proplists:get_value(priv_dir, Config),
    [{dir, filename:join(Priv, unique(<<"broker">>))},
     {spool_dir, filename:join(Priv, unique(<<"spool">>))} | Config].

%% @doc Runs Fun() in a process of its own while the VM reports every
%% process that holds a scheduler for over Ms milliseconds (it never
%% reports the process it reports to, so Fun cannot run in the caller).
%% Returns {Fun's result, the reports on Fun's process, every report},
%% each report's Info as erlang:system_monitor/2 gives it.
long_schedules(Ms, Fun) ->
    Self = self(),
    Previous = erlang:system_monitor(Self, [{long_schedule, Ms}]),
    {Worker, Ref} = spawn_monitor(fun() ->
                                          Self ! {self(), catch Fun()},
                                          %% Its exit is left out of the watch.
                                          receive stop -> ok end
                                  end),
    Result = receive {Worker, R} -> R; {'DOWN', Ref, process, Worker, Reason} -> {'EXIT', Reason} end,
    case Previous of
        undefined -> erlang:system_monitor(undefined);
        {Monitor, Options} -> erlang:system_monitor(Monitor, Options)
    end,
    Worker ! stop,
    All = flush_long_schedules([]),
    case Result of
        {'EXIT', Crash} -> error({watched_call_crashed, Crash});
        Value -> {Value, [Info || {P, Info} <- All, P =:= Worker], All}
    end.

flush_long_schedules(Acc) ->
    receive {monitor, Pid, long_schedule, Info} -> flush_long_schedules([{Pid, Info} | Acc])
    after 0 -> lists:reverse(Acc)
    end.

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

%% @doc None of Secrets in the captured logs, status, metrics, ctl
%% output, the server's sys:get_status/1 or the application env.
assert_not_shown(Secrets) ->
    Texts = [iolist_to_binary(io_lib:format("~p", [T]))
             || T <- [emqx_plugin_kafka_bridge:status(), emqx_plugin_kafka_bridge:metrics(),
                      application:get_all_env(emqx_plugin_kafka_bridge),
                      sys:get_status(emqx_plugin_kafka_bridge_server)]]
        ++ [element(2, emqx_ctl:exit_status(["kafka_bridge", C])) || C <- ["status", "metrics"]]
        ++ captured_logs(),
    [?assertEqual({Secret, nomatch}, {Secret, binary:match(Text, Secret)}) || Text <- Texts, Secret <- Secrets],
    ok.

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

%%--------------------------------------------------------------------
%% Record shape templates (issue 37)
%%--------------------------------------------------------------------

%% @doc Every placeholder an event has: the fields of its event JSON
%% (pub_props aside), and for message events a User-Property.
placeholders(Event) ->
    Common = [<<"event">>, <<"clientid">>, <<"username">>, <<"peerhost">>, <<"timestamp">>, <<"node">>],
    Message = [<<"id">>, <<"topic">>, <<"qos">>, <<"retain">>, <<"payload">>, <<"payload_encoding">>,
               <<"publish_received_at">>, <<"pub_props.'User-Property'.unit">>,
               <<"pub_props.'User-Property'.traceparent">>],
    Common ++ case Event of
                  <<"client_connected">> ->
                      [<<"sockport">>, <<"proto_name">>, <<"proto_ver">>, <<"keepalive">>, <<"clean_start">>,
                       <<"expiry_interval">>, <<"connected_at">>, <<"is_bridge">>];
                  <<"client_disconnected">> -> [<<"reason">>, <<"disconnected_at">>];
                  <<"session_", _/binary>> -> [<<"topic">>, <<"qos">>];
                  <<"message_publish">> -> Message;
                  <<"message_dropped">> -> Message ++ [<<"reason">>];
                  _ -> Message ++ [<<"from_clientid">>, <<"from_username">>]
              end.

%% @doc A JSON value template with each field under its own name.
json_template(Fields) ->
    iolist_to_binary(["{", lists:join(",", [["\"", F, "\":${", F, "}"] || F <- Fields]), "}"]).

%% @doc A text header per field, named after it.
header_templates(Fields) ->
    [#{<<"key">> => F, <<"value">> => <<"${", F/binary, "}">>} || F <- Fields].
