#!/usr/bin/env bash
# cargo for the binaries users get: compiled and linked by zig against
# glibc 2.17, the oldest glibc EMQX ships on (EL7), so one .so per
# architecture loads on every EMQX Linux package and Docker image.
#
#   scripts/portable_cargo.sh ARCH build|test [cargo args...]
#
# ARCH is x86_64 or aarch64. The tools come from `make toolchain`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
GLIBC=2.17

[ $# -ge 2 ] || { echo "usage: $0 x86_64|aarch64 build|test [cargo args...]" >&2; exit 2; }
arch=$1
action=$2
shift 2
target=$arch-unknown-linux-gnu

# zig itself, not `python3 -m ziglang`: one Python start per compiled file
# would slow the OpenSSL build down.
export PATH="$root/_build/zig/bin:$HOME/.cargo/bin:$PATH"
missing=""
command -v zig >/dev/null || missing="$missing zig (PyPI ziglang)"
command -v cargo-zigbuild >/dev/null || missing="$missing cargo-zigbuild"
rustup target list --installed 2>/dev/null | grep -qx "$target" || missing="$missing Rust target $target"
if [ -n "$missing" ]; then
  echo "cannot build for $target: missing$missing (\`make toolchain\` installs them)" >&2
  exit 1
fi

export CC="$root/scripts/zig/cc" CXX="$root/scripts/zig/c++"
# librdkafka links its own .so with a version script that names symbols its
# configure left out; zig's lld refuses that unless told otherwise.
export LDFLAGS="-Wl,--undefined-version"

case $action in
  build) sub=zigbuild ;;
  test) sub=test ;;
  *) echo "$0: unknown action $action" >&2; exit 2 ;;
esac
cd "$root"
exec cargo-zigbuild "$sub" --release --locked --target "$target.$GLIBC" "$@"
