#!/bin/bash
# History on/off pairs: ab.sh's throughput scenario (x1.3 steps from 100/s, 12 steps), 64 publishers,
# 4000 subscribers of one channel, 64 B; A = no history, B = --history '*@100/5m', same binary,
# interleaved A B per round. Usage: bash results/history/ordered-at/pairs-64.sh OUT RINGCAST_BIN [ROUNDS]
out=$1; rc=$2; rounds=${3:-3}
bench=${CARGO_TARGET_DIR:-target}/release/ringcast-bench
mkdir -p $out
for round in $(seq $rounds); do
for side in A B; do
  extra=(); [ $side = B ] && extra=(--history '*@100/5m')
  $bench throughput --output-dir $out/throughput-$side-$round --connections 4000 --payload-bytes 64 --publishers 64 --rate 100 --rate-factor 1.3 --steps-max 12 --duration 5s --p99-budget-ms 250 --server-cores 0 --client-cores 1 --publish-host 127.0.0.1:9051 --spawn $rc -- --listen 127.0.0.1:9050 --api-listen 127.0.0.1:9051 --shards 1 --cores 0 --log warn "${extra[@]}" > $out/throughput-$side-$round.log 2>&1
  echo "$side $round: $(grep 'max sustained' $out/throughput-$side-$round.log) | $(grep 'stopped' $out/throughput-$side-$round.log | cut -c1-120)"
done
done
