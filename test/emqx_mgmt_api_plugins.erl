%% @doc Test-only stand-in for the config update of EMQX's REST API
%% (emqx_mgmt_api_plugins: PUT /api/v5/plugins/NAME-VSN/config) in a
%% one-node cluster, after the Avro check has passed:
%% - 5.8.9 stores the update through emqx_plugins:put_config/3 and answers
%%   204 whatever the plugin said;
%% - 6.2.2 (e5.9 on) calls emqx_plugins:update_config/2 and answers a
%%   refusal 400 BAD_CONFIG, the plugin's error as the message.
%% The line is told by emqx_plugins' exports, as the stand-in sets them.
-module(emqx_mgmt_api_plugins).

-export([put_plugin_config/2]).

%% {204} or {400, #{code, message}}, as minirest answers them.
put_plugin_config(NameVsn, Config) ->
    _ = code:ensure_loaded(emqx_plugins),
    case erlang:function_exported(emqx_plugins, update_config, 2) of
        false ->
            _ = emqx_plugins:put_config(NameVsn, Config, undefined),
            {204};
        true ->
            case emqx_plugins:update_config(NameVsn, Config) of
                ok -> {204};
                {error, Reason} -> {400, #{code => 'BAD_CONFIG', message => emqx_utils:readable_error_msg(Reason)}}
            end
    end.
