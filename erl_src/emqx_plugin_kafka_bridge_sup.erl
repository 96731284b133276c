-module(emqx_plugin_kafka_bridge_sup).

-behaviour(supervisor).

-export([start_link/0, init/1]).

start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

init([]) ->
    Server = #{id => emqx_plugin_kafka_bridge_server,
               start => {emqx_plugin_kafka_bridge_server, start_link, []},
               %% The server flushes to Kafka on stop, bounded by buffer.flush_timeout.
               shutdown => infinity,
               type => worker},
    {ok, {#{strategy => one_for_one, intensity => 5, period => 30}, [Server]}}.
