#!/bin/bash
# Finer steps near the knee: rate 400 x1.1, 12 steps, 64 publishers; A/B interleaved twice.
B=/work/wt/release
for round in 1 2; do
for side in plain hist; do
  if [ $side = hist ]; then S=/tmp/rc-18-history; else S=/tmp/rc-18; fi
  $B/ringcast-bench throughput --output-dir /tmp/ab18/fine/$side-$round --connections 4000 --payload-bytes 64 --publishers 64 --rate 400 --rate-factor 1.1 --steps-max 12 --duration 5s --p99-budget-ms 250 --server-cores 0 --client-cores 1 --publish-host 127.0.0.1:9051 --spawn $S -- --listen 127.0.0.1:9050 --api-listen 127.0.0.1:9051 --shards 1 --cores 0 --log warn > /tmp/ab18/fine/$side-$round.log 2>&1
  echo "$side $round: $(grep 'max sustained' /tmp/ab18/fine/$side-$round.log)"
done
done
