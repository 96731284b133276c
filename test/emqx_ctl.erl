%% @doc Test-only stand-in for EMQX 5.8.9's emqx_ctl (apps/emqx_ctl): a
%% command table, print/1,2 as io:format, and run_command/1 as `emqx ctl'
%% runs it through nodetool: a command that returns anything but `ok' exits
%% 1, and one that raises is logged as ctl_command_crashed.
-module(emqx_ctl).

-export([register_command/3, unregister_command/1, print/1, print/2, run_command/1, lookup_command/1]).
%% Test-only.
-export([exit_status/1, reset/0]).

-define(KEY(Cmd), {?MODULE, command, Cmd}).

register_command(Cmd, {M, F}, _Opts) when is_atom(Cmd) ->
    persistent_term:put(?KEY(Cmd), {M, F}),
    ok.

unregister_command(Cmd) when is_atom(Cmd) ->
    _ = persistent_term:erase(?KEY(Cmd)),
    ok.

lookup_command(Cmd) ->
    case persistent_term:get(?KEY(Cmd), undefined) of
        undefined -> {error, cmd_not_found};
        MF -> {ok, MF}
    end.

print(Msg) ->
    io:format("~ts", [lists:flatten(io_lib:format(Msg, []))]).

print(Format, Args) ->
    io:format("~ts", [lists:flatten(io_lib:format(Format, Args))]).

%% @doc ok | {error, Reason}, as emqx_ctl:run_command/1 returns.
run_command([Cmd | Args]) ->
    case lookup_command(list_to_atom(Cmd)) of
        {ok, {M, F}} ->
            try M:F(Args)
            catch _:Reason ->
                    logger:error("ctl_command_crashed ~p", [Reason]),
                    {error, Reason}
            end;
        {error, _} = Error ->
            Error
    end.

%% @doc `emqx ctl Args': {ExitStatus, Output}. nodetool exits 0 only when
%% run_command returned ok; the output is what the command printed.
exit_status(Args) ->
    Leader = spawn(fun() -> capture_loop(<<>>) end),
    Self = self(),
    Runner = spawn(fun() ->
                           group_leader(Leader, self()),
                           Self ! {self(), run_command(Args)}
                   end),
    Result = receive {Runner, R} -> R after 60000 -> {error, timeout} end,
    Leader ! {get, self()},
    Output = receive {captured, Bin} -> Bin after 5000 -> <<>> end,
    {case Result of ok -> 0; _ -> 1 end, Output}.

%% An io server that keeps what is written to it.
capture_loop(Acc) ->
    receive
        {io_request, From, ReplyAs, {put_chars, Encoding, Chars}} ->
            From ! {io_reply, ReplyAs, ok},
            capture_loop(<<Acc/binary, (unicode:characters_to_binary(Chars, Encoding))/binary>>);
        {io_request, From, ReplyAs, {put_chars, Encoding, M, F, A}} ->
            From ! {io_reply, ReplyAs, ok},
            capture_loop(<<Acc/binary, (unicode:characters_to_binary(apply(M, F, A), Encoding))/binary>>);
        {io_request, From, ReplyAs, _Other} ->
            From ! {io_reply, ReplyAs, {error, request}},
            capture_loop(Acc);
        {get, From} ->
            From ! {captured, Acc}
    end.

reset() ->
    [persistent_term:erase(K) || {K = ?KEY(_), _} <- persistent_term:get()],
    ok.
