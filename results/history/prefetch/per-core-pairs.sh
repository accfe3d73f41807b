#!/bin/bash
# History on/off at fixed rates near the knee, 20 s per run: deliveries per server core-second
# (deliveries / server CPU-seconds, the rate one fully busy core would give) does not hinge on
# the ramp's p99 stop. 4000 subscribers of one channel, 64 B, 64 publishers, one shard on core 0,
# harness on core 1; A = no history, B = --history '*@100/5m', same binary, interleaved.
# Usage: bash results/history/prefetch/per-core-pairs.sh OUT RINGCAST_BIN [ROUNDS] [RATES]
out=$1; rc=$2; rounds=${3:-4}; rates=${4:-"372 483"}
bench=${CARGO_TARGET_DIR:-target}/release/ringcast-bench
mkdir -p $out
for round in $(seq $rounds); do
for rate in $rates; do
for side in A B; do
  extra=(); [ $side = B ] && extra=(--history '*@100/5m')
  dir=$out/$side-$rate-$round
  $bench throughput --output-dir $dir --connections 4000 --payload-bytes 64 --publishers 64 --rate $rate --rate-factor 1.3 --steps-max 1 --duration 20s --p99-budget-ms 250 --server-cores 0 --client-cores 1 --publish-host 127.0.0.1:9051 --spawn $rc -- --listen 127.0.0.1:9050 --api-listen 127.0.0.1:9051 --shards 1 --cores 0 --log warn "${extra[@]}" > $dir.log 2>&1
  python3 - "$dir" "$side $rate $round" <<'PY'
import json, sys
step = json.load(open(sys.argv[1] + '/summary.json'))['throughput']['steps'][0]['delivery']
print(f"{sys.argv[2]}: {step['deliveries_per_s']:.0f} deliveries/s, {step['deliveries_per_server_core']:.0f} per server core-second, p99 {step['latency']['p99_us']/1000:.1f} ms, lost {step['loss']['lost']}")
PY
done
done
done
