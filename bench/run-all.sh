#!/usr/bin/env bash
# Publishes one complete run of every ringcast-bench scenario on this machine into
# results/<run> (default results/latest): the kernel's floor (1 and 8 frames per send), idle
# memory, fan-out latency (coalescing off and on), max throughput, many channels, and churn.
# Each scenario folder holds summary.txt/json, .hgrm files, latency.svg, env.txt, server.log
# and the exact command (in env.txt and summary.json). Then results/README.md is regenerated.
#
# Layout: the server (or the floor loop) on core 0, the clients on core 1. Run it on a quiet
# machine: anything else on those cores is measured too. About 12 minutes.
#
# Usage: bash bench/run-all.sh [RUN_NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
run="results/${1:-latest}"
cargo build --release -p ringcast -p ringcast-bench
bench=${CARGO_TARGET_DIR:-target}/release/ringcast-bench
server="target/release/ringcast"
pin=(--server-cores 0 --client-cores 1)
# Publishes go to ringcast's API listener.
api=(--publish-host 127.0.0.1:9051)
spawn=(--spawn "$server" -- --listen 127.0.0.1:9050 --api-listen 127.0.0.1:9051 --shards 1 --cores 0 --log warn)
mkdir -p "$run"
step() { printf '\n=== %s\n' "$1"; }

step "floor: one frame per send(), 4000 sockets"
$bench floor --connections 4000 --payload-bytes 64 --duration 10s "${pin[@]}" --output-dir "$run/floor-4000"
step "floor8: 8 frames per send(), 4000 sockets"
$bench floor --connections 4000 --payload-bytes 64 --frames-per-send 8 --duration 10s "${pin[@]}" --output-dir "$run/floor8-4000"
step "floor: time to write 9000 sockets, 10 rounds/s (both ends of every socket live in the harness: 10000 would need 20000+ descriptors, over this machine's cap)"
$bench floor --connections 9000 --payload-bytes 64 --rate 10 --duration 10s "${pin[@]}" \
    --source-ips 127.0.0.1-127.0.0.4 --output-dir "$run/floor-9000"
floors=(--compare-floor "$run/floor-4000" --compare-floor "$run/floor8-4000")

step "idle: 15000 connections, memory per connection"
$bench idle --connections 15000 --source-ips 127.0.0.1-127.0.0.4 --duration 20s "${pin[@]}" \
    --output-dir "$run/idle-15000" "${spawn[@]}"
step "fanout: 10000 subscribers, 10 msg/s, no coalescing window"
$bench fanout --connections 10000 --source-ips 127.0.0.1-127.0.0.4 --rate 10 --payload-bytes 64 \
    --duration 20s "${pin[@]}" --compare-floor "$run/floor-9000" --output-dir "$run/fanout-10000" "${api[@]}" "${spawn[@]}"
step "fanout: 10000 subscribers, 10 msg/s, --write-coalesce 1ms"
$bench fanout --connections 10000 --source-ips 127.0.0.1-127.0.0.4 --rate 10 --payload-bytes 64 \
    --duration 20s "${pin[@]}" --compare-floor "$run/floor-9000" --output-dir "$run/fanout-10000-coalesce-1ms" \
    "${api[@]}" "${spawn[@]}" --write-coalesce 1ms
step "throughput: 4000 subscribers, 64-byte messages, 4 HTTP publishers"
$bench throughput --connections 4000 --payload-bytes 64 --publishers 4 --rate 100 --rate-factor 1.3 \
    --steps-max 12 --duration 5s --p99-budget-ms 250 "${pin[@]}" "${floors[@]}" \
    --output-dir "$run/throughput-4000" "${api[@]}" "${spawn[@]}"
step "channels: 10000 subscribers over 1000 channels, 5000 msg/s"
$bench channels --connections 10000 --source-ips 127.0.0.1-127.0.0.4 --channels 1000 --rate 5000 \
    --publishers 8 --payload-bytes 64 --duration 20s "${pin[@]}" --output-dir "$run/channels-10000" "${api[@]}" "${spawn[@]}"
step "churn: 10000 connections, 100000 connect/disconnect cycles under 10 msg/s"
$bench churn --connections 10000 --source-ips 127.0.0.1-127.0.0.4 --churn-rate 2000 --cycles 100000 \
    --rate 10 --duration 60s "${pin[@]}" --output-dir "$run/churn-10000" "${api[@]}" "${spawn[@]}"

step "results/README.md"
python3 bench/results_table.py "$run" > results/README.md
echo "published $run; results/README.md regenerated"
