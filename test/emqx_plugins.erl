%% @doc Test-only stand-in for EMQX's emqx_plugins: get_config/1 returns
%% what a test stored with set_config/2 (binary keys, as EMQX returns them
%% for config.hocon), or #{} when nothing was stored.
-module(emqx_plugins).

-export([get_config/1, set_config/2]).

get_config(NameVsn) ->
    persistent_term:get({?MODULE, NameVsn}, #{}).

set_config(NameVsn, Config) ->
    persistent_term:put({?MODULE, NameVsn}, Config).
