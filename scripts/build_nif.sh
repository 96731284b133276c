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
  cp "target/$arch-unknown-linux-gnu/release/libkafka_bridge_nif.so" "priv/$arch/"
done
# The single-architecture layout that came before.
rm -f priv/libkafka_bridge_nif.so
