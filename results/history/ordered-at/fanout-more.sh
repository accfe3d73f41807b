#!/usr/bin/env bash
# fanout 10k @ 10 msg/s, A/B interleaved (ab.sh's fanout command)
out=$1; rounds=${2:-3}
# A = /tmp/rc-A (56ce88f), B = /tmp/rc-B (this stop), both built with --features test-hooks
B=${CARGO_TARGET_DIR:-target}/release/ringcast-bench
for round in $(seq $rounds); do
  for side in A B; do
    bin=/tmp/rc-$side
    $B fanout --output-dir $out/fanout-$side-$round --connections 10000 --source-ips 127.0.0.1-127.0.0.4 --rate 10 \
      --payload-bytes 64 --duration 20s --server-cores 0 --client-cores 1 --publish-host 127.0.0.1:9051 \
      --spawn $bin -- --listen 127.0.0.1:9050 --api-listen 127.0.0.1:9051 --shards 1 --cores 0 --log warn > $out/fanout-$side-$round.log 2>&1
    echo "$side $round: $(grep -E '^  latency' $out/fanout-$side-$round.log | cut -c1-110)"
  done
done
