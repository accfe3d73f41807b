#!/usr/bin/env bash
# The Redis subscriber core's forwarding rate (messages/s from Redis into the shards), one Redis
# (`--redis`, PUBLISH) vs a 3-master / 3-replica Redis Cluster (`--redis-cluster`, SPUBLISH),
# next to what redis-benchmark alone measures for PUBLISH / SPUBLISH on this machine; and the
# publish -> receive latency with two nodes on the cluster (ignored test end_to_end_latency).
# The measurement is the ignored test `forwarding_rate` in tests/cluster_node.rs (it starts
# redis-server, the cluster and a ringcast node on free loopback ports, and stops them).
# Usage: bash bench/cluster-forwarding.sh [output dir, default results/cluster]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/cluster}
mkdir -p "$out"
command=(cargo test --release --features ringcast/test-hooks --test cluster_node -- --ignored forwarding_rate end_to_end_latency --nocapture --test-threads 1)
bash results/env.sh "${command[*]}" > "$out/env.txt"
{
    echo "redis: $(redis-server --version)"
    echo "redis-benchmark: $(redis-benchmark --version 2>/dev/null || echo unknown)"
} >> "$out/env.txt"
"${command[@]}" 2> >(grep --line-buffered -E "^(forwarding|latency)" | tee "$out/forwarding.txt" >&2) > /dev/null
