#!/usr/bin/env bash
# make test: rebuilding the NIF never rewrites a .so that a running VM has
# loaded. A VM calls into priv/x86_64/libkafka_bridge_nif.so in a tight
# loop while scripts/build_nif.sh runs; copying onto the loaded file (its
# pages are mapped) killed such a VM with SIGBUS (exit 135), even with
# byte-identical contents.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
done_flag="$dir/built"
inode_before=$(stat -c %i priv/x86_64/libkafka_bridge_nif.so)

erl -noshell -pa _build/default/lib/emqx_plugin_kafka_bridge/ebin -eval '
  {module, _} = code:ensure_loaded(emqx_plugin_kafka_bridge_nif),
  ok = emqx_plugin_kafka_bridge_nif:noop(x),
  Flag = "'"$done_flag"'",
  Calls = fun C(0) -> ok; C(N) -> _ = emqx_plugin_kafka_bridge_nif:noop(x), C(N - 1) end,
  Deadline = erlang:monotonic_time(second) + 300,
  Loop = fun L() ->
                 Calls(10000),
                 case filelib:is_file(Flag) orelse erlang:monotonic_time(second) > Deadline of
                     true -> ok;
                     false -> L()
                 end
         end,
  Loop(),
  Calls(100000),
  io:format("alive~n"),
  halt(0).' > "$dir/vm.out" 2>&1 &
vm=$!
sleep 1
scripts/build_nif.sh > "$dir/build.out" 2>&1 || { cat "$dir/build.out"; kill "$vm"; exit 1; }
touch "$done_flag"
rc=0
wait "$vm" || rc=$?
inode_after=$(stat -c %i priv/x86_64/libkafka_bridge_nif.so)
if [ $rc -eq 0 ] && grep -qx alive "$dir/vm.out" && [ "$inode_before" != "$inode_after" ]; then
  echo "ok: the NIF was rebuilt into a new file while a VM ran it (exit $rc)"
  echo "1 passed, 0 failed"
else
  echo "FAILED: VM exit $rc, inode $inode_before -> $inode_after; VM said: $(cat "$dir/vm.out")"
  echo "0 passed, 1 failed"
  exit 1
fi
