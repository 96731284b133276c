#!/usr/bin/env bash
# Builds the NIF for every architecture the tarball carries, into
# priv/ARCH/libkafka_bridge_nif.so, where emqx_plugin_kafka_bridge_nif loads
# the one for the running VM. A target that cannot be built fails the build:
# a tarball never ships without one of its architectures.
set -euo pipefail
cd "$(dirname "$0")/.."

for arch in x86_64 aarch64; do
  if ! scripts/portable_cargo.sh "$arch" build -p kafka_bridge_nif; then
    echo "build_nif: the $arch NIF could not be built; no tarball without it" >&2
    exit 1
  fi
  mkdir -p "priv/$arch"
  # A new file renamed into place: a VM that has the old one loaded keeps
  # its inode. Copying onto it would rewrite the pages that VM has mapped,
  # and it dies with SIGBUS (test/build_nif_test.sh).
  tmp=$(mktemp "priv/$arch/.libkafka_bridge_nif.so.XXXXXX")
  cp "target/$arch-unknown-linux-gnu/release/libkafka_bridge_nif.so" "$tmp" || { rm -f "$tmp"; exit 1; }
  chmod 755 "$tmp"
  mv -f "$tmp" "priv/$arch/libkafka_bridge_nif.so"
done
# The single-architecture layout that came before.
rm -f priv/libkafka_bridge_nif.so
