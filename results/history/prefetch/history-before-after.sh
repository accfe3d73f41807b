#!/bin/bash
# The prefetch on a channel with history: the binary before it (O) and after it (P), both with
# --history '*@100/5m', at one fixed rate for 20 s, interleaved O P per round; 4000 subscribers,
# 64 B, 64 publishers, one shard on core 0, harness on core 1.
# Usage: bash results/history/prefetch/history-before-after.sh OUT BEFORE_BIN AFTER_BIN [ROUNDS] [RATE]
out=$1; before=$2; after=$3; rounds=${4:-3}; rate=${5:-483}
bench=${CARGO_TARGET_DIR:-target}/release/ringcast-bench
mkdir -p $out
for round in $(seq $rounds); do
for side in O P; do
  rc=$before; [ $side = P ] && rc=$after
  dir=$out/$side-$rate-$round
  $bench throughput --output-dir $dir --connections 4000 --payload-bytes 64 --publishers 64 --rate $rate --rate-factor 1.3 --steps-max 1 --duration 20s --p99-budget-ms 250 --server-cores 0 --client-cores 1 --publish-host 127.0.0.1:9051 --spawn $rc -- --listen 127.0.0.1:9050 --api-listen 127.0.0.1:9051 --shards 1 --cores 0 --log warn --history '*@100/5m' > $dir.log 2>&1
  python3 - "$dir" "$side $rate $round" <<'PY'
import json, sys
step = json.load(open(sys.argv[1] + '/summary.json'))['throughput']['steps'][0]['delivery']
print(f"{sys.argv[2]}: {step['deliveries_per_s']:.0f} deliveries/s, {step['deliveries_per_server_core']:.0f} per server core-second, p99 {step['latency']['p99_us']/1000:.1f} ms, lost {step['loss']['lost']}")
PY
done
done
