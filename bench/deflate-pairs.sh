#!/usr/bin/env bash
# permessage-deflate against no compression, interleaved off/on per round on the same cores
# (issue 16; results/deflate/README.md):
#   throughput  4000 subscribers, 1 KiB JSON (--payload-kind json), 4 publishers, x1.5 steps
#               from 20/s, p99 budget 250 ms: max sustained deliveries/s, bytes per delivery,
#               server CPU; `on` adds the harness's --deflate (it offers permessage-deflate as
#               Chromium does; the server's default --compression on accepts it)
#   idle        15000 connections, memory per connection after the ramp (RAMP connections/s)
# Server on core 0 (one shard), the harness on core 1; run it on a quiet machine. About 9 min
# for 3 throughput rounds, 1 min per idle round.
#
# Usage: bash bench/deflate-pairs.sh OUT_DIR throughput|idle [ROUNDS] (RAMP=3000 for idle)
set -euo pipefail
out=$1; scenario=$2; rounds=${3:-3}
cd "$(dirname "$0")/.."
cargo build --release -p ringcast -p ringcast-bench
bin=${CARGO_TARGET_DIR:-target}/release
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mkdir -p "$out"
for round in $(seq "$rounds"); do
    for mode in off on; do
        flag=(); [ "$mode" = on ] && flag=(--deflate)
        port=$(free_port); api=$(free_port)
        case "$scenario" in
            throughput) args=(throughput --connections 4000 --ramp-rate 2000 --rate 20 --rate-factor 1.5
                              --steps-max 14 --duration 5s --p99-budget-ms 250 --publishers 4
                              --payload-bytes 1024 --payload-kind json --publish-host "127.0.0.1:$api") ;;
            idle) args=(idle --connections 15000 --ramp-rate "${RAMP:-3000}" --settle 2s --duration 10s) ;;
            *) echo "unknown scenario $scenario (throughput or idle)" >&2; exit 2 ;;
        esac
        label="$scenario-$mode-$round"
        "$bin/ringcast-bench" "${args[@]}" "${flag[@]}" --host "127.0.0.1:$port" \
            --output-dir "$out/$label" --server-cores 0 --client-cores 1 \
            --spawn "$bin/ringcast" -- --listen "127.0.0.1:$port" --api-listen "127.0.0.1:$api" \
            --shards 1 --cores 0 --log warn > "$out/$label.log" 2>&1 || echo "($label failed: see $out/$label.log)"
        echo "$label: $(grep -E 'max sustained|server memory' "$out/$label.log" | tr -s ' ')"
    done
done
