#!/usr/bin/env bash
# Builds the EMQX plugin package _build/plugins/NAME-VSN.tar.gz (+ .sha256)
# from rebar3's own relx release: only this plugin's app is shipped, since
# EMQX provides kernel, stdlib and the rest.
set -euo pipefail
cd "$(dirname "$0")/.."

name=emqx_plugin_kafka_bridge
vsn=$(erl -noshell -eval \
  '{ok,[{application,_,P}]}=file:consult("erl_src/emqx_plugin_kafka_bridge.app.src"),
   io:format("~s",[proplists:get_value(vsn,P)]), halt().')
otp=$(erl -noshell -eval 'io:format("~s",[erlang:system_info(otp_release)]), halt().')
git_ref=$(git rev-parse HEAD 2>/dev/null || echo unknown)

rebar3 release >/dev/null
app_dir=_build/default/rel/$name/lib/$name-$vsn
for f in ebin/$name.app priv/x86_64/libkafka_bridge_nif.so priv/aarch64/libkafka_bridge_nif.so priv/config.hocon priv/config_schema.avsc priv/config_i18n.json; do
  [ -e "$app_dir/$f" ] || { echo "missing $app_dir/$f" >&2; exit 1; }
done

stage=_build/plugins/stage
pkg=$stage/$name-$vsn
rm -rf "$stage" && mkdir -p "$pkg"
cp -rL "$app_dir" "$pkg/"
cp README.md "$pkg/"
cat > "$pkg/release.json" <<JSON
{
  "name": "$name",
  "rel_vsn": "$vsn",
  "rel_apps": ["$name-$vsn"],
  "description": "Bridges EMQX events (publish, deliver, ack, drop, connect, subscribe) into Apache Kafka through a Rust NIF with a bounded, non-blocking buffer.",
  "authors": ["emqx_plugin_kafka_bridge developers"],
  "builder": {
    "name": "emqx_plugin_kafka_bridge developers",
    "contact": "emqx_plugin_kafka_bridge maintainers",
    "website": "https://www.emqx.io"
  },
  "repo": "emqx_plugin_kafka_bridge",
  "functionality": ["Kafka bridge"],
  "compatibility": {"emqx": ">= 5.7.0"},
  "git_ref": "$git_ref",
  "metadata_vsn": "0.2.0",
  "built_on_otp_release": "$otp",
  "with_config_schema": true,
  "hidden": false
}
JSON

mkdir -p _build/plugins
tarball=_build/plugins/$name-$vsn.tar.gz
tar -C "$stage" -czf "$tarball" "$name-$vsn"
(cd _build/plugins && sha256sum "$name-$vsn.tar.gz" > "$name-$vsn.tar.gz.sha256")
echo "$tarball"
