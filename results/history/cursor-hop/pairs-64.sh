#!/bin/bash
# More pairs: ab.sh's throughput scenario (x1.3 steps from 100/s, 12 steps), 64 publishers,
# A = no history, B = --history '*@100/5m', interleaved A B per round.
B=/work/wt/release
out=${1:-/tmp/ab18/pairs}
for round in 1 2 3; do
for side in A B; do
  if [ $side = B ]; then S=/tmp/rc-18-history; else S=/tmp/rc-18; fi
  $B/ringcast-bench throughput --output-dir $out/throughput-$side-$round --connections 4000 --payload-bytes 64 --publishers 64 --rate 100 --rate-factor 1.3 --steps-max 12 --duration 5s --p99-budget-ms 250 --server-cores 0 --client-cores 1 --publish-host 127.0.0.1:9051 --spawn $S -- --listen 127.0.0.1:9050 --api-listen 127.0.0.1:9051 --shards 1 --cores 0 --log warn > $out/throughput-$side-$round.log 2>&1
  echo "$side $round: $(grep 'max sustained' $out/throughput-$side-$round.log) | $(grep 'stopped' $out/throughput-$side-$round.log | cut -c1-120)"
done
done
