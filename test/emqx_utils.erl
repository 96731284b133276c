%% @doc Test-only stand-in for the one function of EMQX's emqx_utils the
%% other stand-ins use: readable_error_msg/1 (6.2.2), which turns a
%% plugin's error into the text EMQX shows (a binary as it is).
-module(emqx_utils).

-export([readable_error_msg/1]).

readable_error_msg(Msg) when is_binary(Msg) -> Msg;
readable_error_msg(Error) ->
    case io_lib:printable_unicode_list(Error) of
        true -> unicode:characters_to_binary(Error);
        %% EMQX tries emqx_hocon:format_error/2 first, for hocon's errors.
        false -> iolist_to_binary(io_lib:format("~0p", [Error]))
    end.
