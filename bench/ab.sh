#!/usr/bin/env bash
# Before/after measurement of the data path: two ringcast binaries (A = before, B = after),
# interleaved A B A B on the same cores, through the same harness (the newer ringcast-bench):
# max throughput (4000 subscribers, 64 B) and fan-out latency (10k subscribers, 10 msg/s), then
# idle memory (15k connections) once each. Server on core 0, clients on core 1; run it on a
# quiet machine. About 10 minutes.
#
# Usage: bash bench/ab.sh OUT_DIR BEFORE_BIN AFTER_BIN [ROUNDS]
#   A binary older than the two-listener change (no --api-listen) is driven on one port; say so
#   with A_SINGLE_PORT=1. PUBLISHERS (default 4) sets the throughput scenario's publishers (each
#   keeps one publish in flight: raise it when the publish answer is slow, e.g. with history).
set -euo pipefail
out=$1; before=$2; after=$3; rounds=${4:-2}
publishers=${PUBLISHERS:-4}
cd "$(dirname "$0")/.."
cargo build --release -p ringcast-bench
bench=${CARGO_TARGET_DIR:-target}/release/ringcast-bench
pin=(--server-cores 0 --client-cores 1)
mkdir -p "$out"
args_for() { # which binary -> publish host + spawn arguments
    if [ "$1" = A ] && [ -n "${A_SINGLE_PORT:-}" ]; then
        echo "--publish-host 127.0.0.1:9050 --spawn $before -- --listen 127.0.0.1:9050 --shards 1 --cores 0 --log warn"
    elif [ "$1" = A ]; then
        echo "--publish-host 127.0.0.1:9051 --spawn $before -- --listen 127.0.0.1:9050 --api-listen 127.0.0.1:9051 --shards 1 --cores 0 --log warn"
    else
        echo "--publish-host 127.0.0.1:9051 --spawn $after -- --listen 127.0.0.1:9050 --api-listen 127.0.0.1:9051 --shards 1 --cores 0 --log warn"
    fi
}
run() { # label scenario-args...
    local label=$1; shift
    printf '\n=== %s\n' "$label"
    local scenario=$1; shift
    "$bench" "$scenario" --output-dir "$out/$label" "$@" > "$out/$label.log" 2>&1 || echo "($label failed: see $out/$label.log)"
    tail -n 12 "$out/$label.log"
}
for round in $(seq "$rounds"); do
    for side in A B; do
        # shellcheck disable=SC2046
        run "throughput-$side-$round" throughput --connections 4000 --payload-bytes 64 --publishers "$publishers" \
            --rate 100 --rate-factor 1.3 --steps-max 12 --duration 5s --p99-budget-ms 250 "${pin[@]}" $(args_for $side)
    done
    for side in A B; do
        # shellcheck disable=SC2046
        run "fanout-$side-$round" fanout --connections 10000 --source-ips 127.0.0.1-127.0.0.4 --rate 10 \
            --payload-bytes 64 --duration 20s "${pin[@]}" $(args_for $side)
    done
done
for side in A B; do
    # shellcheck disable=SC2046
    run "idle-$side" idle --connections 15000 --source-ips 127.0.0.1-127.0.0.4 --duration 20s "${pin[@]}" \
        $(args_for $side | sed 's/--publish-host [^ ]* //')
done
bash results/env.sh "PUBLISHERS=$publishers bash bench/ab.sh $out $before $after $rounds (A=$before B=$after)" > "$out/env.txt"
echo "A: $before ($("$before" --version 2>/dev/null || true))" >> "$out/env.txt"
echo "B: $after ($("$after" --version 2>/dev/null || true))" >> "$out/env.txt"
