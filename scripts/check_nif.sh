#!/usr/bin/env bash
# make check: proves that each NIF .so loads on every EMQX host of its
# architecture. Reads the ELF with readelf, which understands any
# architecture (ldd cannot read a foreign one and says nothing).
#
#   scripts/check_nif.sh [ARCH=FILE ...]    default: every priv/ARCH/*.so
#
# For each file:
#   - the ELF machine is ARCH's;
#   - no versioned glibc symbol newer than 2.17 (EL7);
#   - no strong undefined symbol without a version other than enif_*: such a
#     symbol is bound at load time from whatever the host has, so a .so built
#     against newer headers could still need, say, glibc 2.28's mtx_lock;
#   - NEEDED holds only the C runtime;
#   - NODELETE is set (threads may outlive a purge of the module).
set -uo pipefail
cd "$(dirname "$0")/.."
MAX_GLIBC=2.17

if [ $# -eq 0 ]; then
  for arch in x86_64 aarch64; do set -- "$@" "$arch=priv/$arch/libkafka_bridge_nif.so"; done
fi

failed=0
fail() { echo "check: $file: $*" >&2; failed=1; }

for spec in "$@"; do
  arch=${spec%%=*}
  file=${spec#*=}
  case $arch in
    x86_64) machine="Advanced Micro Devices X86-64"; loader=ld-linux-x86-64.so.2 ;;
    aarch64) machine="AArch64"; loader=ld-linux-aarch64.so.1 ;;
    *) echo "check: unknown architecture $arch" >&2; exit 2 ;;
  esac
  if [ ! -f "$file" ]; then fail "missing"; continue; fi

  got=$(readelf -h "$file" | sed -n 's/^ *Machine: *//p')
  [ "$got" = "$machine" ] || fail "ELF machine is '$got', not $arch"

  syms=$(readelf --dyn-syms -W "$file")
  newest=$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$syms" | sed 's/GLIBC_//' | sort -Vu | tail -1)
  if [ -n "$newest" ] && [ "$(printf '%s\n%s\n' "$newest" "$MAX_GLIBC" | sort -V | tail -1)" != "$MAX_GLIBC" ]; then
    fail "needs GLIBC_$newest (at most $MAX_GLIBC):" \
      $(grep -E "GLIBC_$newest( |$)" <<<"$syms" | awk '{print $8}' | head -5)
  fi

  # Columns: Num Value Size Type Bind Vis Ndx Name[@version]
  unversioned=$(awk '$7 == "UND" && $5 == "GLOBAL" && $8 != "" && $8 !~ /@/ && $8 !~ /^enif_/ {print $8}' <<<"$syms")
  [ -z "$unversioned" ] || fail "strong undefined symbols without a version:" $unversioned

  needed=$(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  extra=$(grep -vxE "libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|$loader" <<<"$needed")
  [ -z "$extra" ] || fail "needs shared libraries beyond the C runtime:" $extra

  readelf -d "$file" | grep -q 'Flags:.*NODELETE' || fail "lacks -z nodelete"

  [ $failed -ne 0 ] || echo "check: $file: $arch, GLIBC_${newest:-none} at most, C runtime only ($(echo $needed)), NODELETE"
done
exit $failed
