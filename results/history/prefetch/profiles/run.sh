#!/bin/bash
# One fixed-rate run (20 s) with `perf record -F 999 -g` on the server for 10 s of it.
# A = no history, B = --history '*@100/5m'. A2/B2: the binary before the prefetch (6b37a61),
# A3/B3: after it. Report: perf report -i OUT.perf.data --no-children --sort symbol --stdio
# Usage: bash run.sh A|B RATE OUT RINGCAST_BIN
side=$1; rate=$2; out=$3; rc=$4
bench=${CARGO_TARGET_DIR:-target}/release/ringcast-bench
extra=(); [ $side = B ] && extra=(--history '*@100/5m')
$bench throughput --output-dir $out --connections 4000 --payload-bytes 64 --publishers 64 --rate $rate --rate-factor 1.3 --steps-max 1 --duration 20s --p99-budget-ms 250 --server-cores 0 --client-cores 1 --publish-host 127.0.0.1:9051 --spawn $rc -- --listen 127.0.0.1:9050 --api-listen 127.0.0.1:9051 --shards 1 --cores 0 --log warn "${extra[@]}" > $out.log 2>&1 &
bpid=$!
sleep 4
spid=$(pgrep -f "ringcast --listen 127.0.0.1:9050" | head -1)
perf record -F 999 -g -p $spid -o $out.perf.data -- sleep 10 > /dev/null 2>&1
wait $bpid
grep -E "step 1|max sustained|stopped" $out.log
