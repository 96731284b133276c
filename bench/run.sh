#!/usr/bin/env bash
# make bench: runs bench/kafka_bridge_bench.erl against fresh Apache Kafka
# nodes on loopback and writes its figures to BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export PROJECT_ROOT="$PWD"
export BENCH_DIR
BENCH_DIR=$(mktemp -d /tmp/kafka_bridge_bench.XXXXXX)
trap 'pkill -9 -f "kafka.Kafka $BENCH_DIR" 2>/dev/null || true; rm -rf "$BENCH_DIR"' EXIT

mkdir -p "$BENCH_DIR/ebin"
erlc -o "$BENCH_DIR/ebin" test/emqx_hooks.erl test/emqx_plugins.erl test/emqx_ctl.erl test/kafka_bridge_test_lib.erl test/kafka_bridge_broker.erl \
  bench/kafka_bridge_bench.erl bench/kafka_bridge_paced.erl
out="$BENCH_DIR/figures.md"
erl -noshell +S 2 -pa _build/default/lib/emqx_plugin_kafka_bridge/ebin -pa "$BENCH_DIR/ebin" \
    -kernel logger_level emergency -eval 'kafka_bridge_bench:main()' | tee "$out"
# The hook cost once more with mimalloc keeping the memory it frees, so
# that the growing queue needs fewer fresh pages for the kernel to zero
# (bench/NOTES.md, issue 38).
MIMALLOC_PURGE_DELAY=-1 erl -noshell +S 2 -pa _build/default/lib/emqx_plugin_kafka_bridge/ebin -pa "$BENCH_DIR/ebin" \
    -kernel logger_level emergency -eval 'kafka_bridge_bench:main_kept_memory()' | tee -a "$out"
# CPU per event at paced rates, in a VM whose schedulers sleep when idle
# instead of spinning: the spinning would be counted as the events' cost.
erl -noshell +S 2 +sbwt none +sbwtdcpu none +sbwtdio none \
    -pa _build/default/lib/emqx_plugin_kafka_bridge/ebin -pa "$BENCH_DIR/ebin" \
    -kernel logger_level emergency -eval 'kafka_bridge_paced:main()' | tee -a "$out"

{
  echo "# Benchmarks"
  echo
  echo "Produced by \`make bench\` (bench/run.sh, bench/kafka_bridge_bench.erl, bench/kafka_bridge_paced.erl) on $(date -u +%Y-%m-%d) at $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo "Medians of repeated runs on the same machine in the same run; Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' test/kafka/pom.xml) (one KRaft node, from test/kafka/pom.xml) on loopback."
  echo "Generated: notes on these figures are in bench/NOTES.md."
  echo
  cat "$out"
} > BENCHMARKS.md
echo "wrote BENCHMARKS.md"
