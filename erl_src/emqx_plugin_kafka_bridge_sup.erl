-module(emqx_plugin_kafka_bridge_sup).

-behaviour(supervisor).

-export([start_link/0, init/1]).

%% The longest stop: the largest buffer.flush_timeout (300 s, the NIF's
%% config::MAX_FLUSH_TIMEOUT_MS) plus a margin for librdkafka's purge, the
%% spool's last fsync and the producer thread's join. A cargo test checks
%% it against the Rust constant.
-define(SHUTDOWN_MS, 315000).

-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    Server = #{id => emqx_plugin_kafka_bridge_server,
               start => {emqx_plugin_kafka_bridge_server, start_link, []},
               %% The server flushes to Kafka on stop, bounded by buffer.flush_timeout.
               shutdown => ?SHUTDOWN_MS,
               type => worker},
    {ok, {#{strategy => one_for_one, intensity => 5, period => 30}, [Server]}}.
