%% Log lines are logger reports, as EMQX's own: a static `msg' naming what
%% happened and fields, in the plugin's own domain (for a handler filter).
-define(LOG(Level, Report), logger:log(Level, Report, #{domain => [emqx_plugin_kafka_bridge]})).
