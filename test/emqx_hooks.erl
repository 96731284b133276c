%% @doc Test-only stand-in for EMQX's emqx_hooks, so the plugin can start
%% outside EMQX. It keeps registrations and runs them the way EMQX does:
%% higher priority first, ExtraArgs appended, `stop' ends a chain, fold
%% hooks thread `{ok, Acc}', exceptions are caught and counted, and add/3
%% and put/3 raise `{invalid_hookpoint, _}' for a hook point EMQX 5.8.9
%% does not know (emqx_hookpoints).
-module(emqx_hooks).

-export([add/3, put/3, del/2]).
-export([run/2, run_fold/3, lookup/1, exceptions/0, reset/0]).

-define(TAB, emqx_hooks_stand_in).

%% emqx_hookpoints:?HOOKPOINTS in EMQX 5.8.9.
-define(HOOKPOINTS,
        ['alarm.activated', 'alarm.deactivated', 'client.connect', 'client.connack',
         'client.connected', 'client.disconnected', 'client.authorize',
         'client.check_authz_complete', 'client.check_authn_complete', 'client.authenticate',
         'client.subscribe', 'client.unsubscribe', 'client.timeout',
         'client.monitored_process_down', 'session.created', 'session.subscribed',
         'session.unsubscribed', 'session.resumed', 'session.discarded', 'session.takenover',
         'session.terminated', 'message.publish', 'message.puback', 'message.dropped',
         'message.transformation_failed', 'schema.validation_failed', 'message.delivered',
         'message.acked', 'delivery.dropped', 'delivery.completed', 'cm.channel.unregistered',
         'tls_handshake.psk_lookup']).

verify_hookpoint(HookPoint) ->
    lists:member(HookPoint, ?HOOKPOINTS) orelse error({invalid_hookpoint, HookPoint}),
    ok.

add(HookPoint, {M, F, A}, Priority) when is_atom(HookPoint) ->
    ok = verify_hookpoint(HookPoint),
    ensure_table(),
    case [x || {_, {M1, F1, _}} <- lookup(HookPoint), {M1, F1} =:= {M, F}] of
        [] -> ets:insert(?TAB, {{HookPoint, {M, F}}, Priority, {M, F, A}}), ok;
        _ -> {error, already_exists}
    end.

put(HookPoint, {M, F, A}, Priority) ->
    ok = verify_hookpoint(HookPoint),
    ensure_table(),
    ets:insert(?TAB, {{HookPoint, {M, F}}, Priority, {M, F, A}}),
    ok.

del(HookPoint, {M, F}) ->
    ensure_table(),
    ets:delete(?TAB, {HookPoint, {M, F}}),
    ok.

%% @doc The callbacks on a hook point, highest priority first.
lookup(HookPoint) ->
    ensure_table(),
    Entries = ets:match_object(?TAB, {{HookPoint, '_'}, '_', '_'}),
    [{P, MFA} || {_, P, MFA} <- lists:reverse(lists:keysort(2, Entries))].

run(HookPoint, Args) ->
    run_chain(lookup(HookPoint), Args).

run_chain([], _Args) -> ok;
run_chain([{_, {M, F, A}} | Rest], Args) ->
    case safe_apply(M, F, Args ++ A) of
        stop -> ok;
        _ -> run_chain(Rest, Args)
    end.

run_fold(HookPoint, Args, Acc) ->
    fold_chain(lookup(HookPoint), Args, Acc).

fold_chain([], _Args, Acc) -> Acc;
fold_chain([{_, {M, F, A}} | Rest], Args, Acc) ->
    case safe_apply(M, F, Args ++ [Acc] ++ A) of
        stop -> Acc;
        {stop, NewAcc} -> NewAcc;
        {ok, NewAcc} -> fold_chain(Rest, Args, NewAcc);
        _ -> fold_chain(Rest, Args, Acc)
    end.

safe_apply(M, F, Args) ->
    try erlang:apply(M, F, Args)
    catch Class:Reason ->
        ets:update_counter(?TAB, exceptions, 1, {exceptions, 0}),
        {hook_callback_exception, Class, Reason}
    end.

%% @doc How many callbacks raised (EMQX logs hook_callback_exception).
exceptions() ->
    ensure_table(),
    case ets:lookup(?TAB, exceptions) of [{_, N}] -> N; [] -> 0 end.

reset() ->
    ensure_table(),
    ets:delete_all_objects(?TAB),
    ok.

%% The table must outlive test-case processes: a parked process owns it.
ensure_table() ->
    case ets:whereis(?TAB) of
        undefined ->
            Parent = self(),
            spawn(fun() ->
                          ets:new(?TAB, [named_table, public, set]),
                          Parent ! table_ready,
                          receive never -> ok end
                  end),
            receive table_ready -> ok after 5000 -> error(no_hooks_table) end;
        _ ->
            ok
    end.
