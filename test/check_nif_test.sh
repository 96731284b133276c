#!/usr/bin/env bash
# make test: scripts/check_nif.sh passes the shipped .so files and refuses
# each kind of .so that would not load on an old or foreign EMQX host.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0

expect() {  # expect pass|fail WHAT MESSAGE-FRAGMENT ARCH=FILE
  local want=$1 what=$2 fragment=$3 spec=$4 out rc=0
  out=$(scripts/check_nif.sh "$spec" 2>&1) || rc=$?
  if { [ "$want" = pass ] && [ $rc -eq 0 ]; } ||
     { [ "$want" = fail ] && [ $rc -ne 0 ] && grep -qF -- "$fragment" <<<"$out"; }; then
    echo "ok: $what"
  else
    echo "FAILED: $what (wanted $want with '$fragment', exit $rc): $out"
    failures=$((failures + 1))
  fi
}

printf 'int mtx_lock(void *);\nint use(void *m) { return mtx_lock(m); }\n' > "$dir/threads.c"
printf 'int use(int x) { return x + 1; }\n' > "$dir/plain.c"
# Built against this machine's glibc: mtx_lock@GLIBC_2.34 (Debian 12 has 2.36).
gcc -shared -fPIC -Wl,-z,nodelete -o "$dir/new_glibc.so" "$dir/threads.c"
# The trap: mtx_lock left undefined without a version, as when librdkafka is
# compiled by the system compiler and linked by zig against glibc 2.17.
gcc -shared -fPIC -nostdlib -Wl,-z,nodelete -o "$dir/unversioned.so" "$dir/threads.c"
gcc -shared -fPIC -o "$dir/deletable.so" "$dir/plain.c"
gcc -shared -fPIC -Wl,-z,nodelete -o "$dir/libstdcxx.so" "$dir/plain.c" -lstdc++ -Wl,--no-as-needed -lstdc++

expect pass "the x86_64 NIF" "" x86_64=priv/x86_64/libkafka_bridge_nif.so
expect pass "the aarch64 NIF" "" aarch64=priv/aarch64/libkafka_bridge_nif.so
expect fail "a glibc 2.34 symbol" "needs GLIBC_2.34" "x86_64=$dir/new_glibc.so"
expect fail "an unversioned mtx_lock" "without a version: mtx_lock" "x86_64=$dir/unversioned.so"
expect fail "no NODELETE" "lacks -z nodelete" "x86_64=$dir/deletable.so"
expect fail "libstdc++" "beyond the C runtime: libstdc++.so.6" "x86_64=$dir/libstdcxx.so"
expect fail "x86_64 code shipped as aarch64" "not aarch64" aarch64=priv/x86_64/libkafka_bridge_nif.so
expect fail "a missing file" "missing" x86_64=$dir/none.so

[ $failures -eq 0 ] || { echo "$failures check_nif case(s) failed"; exit 1; }
echo "check_nif: all cases behaved"
