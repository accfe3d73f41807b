#!/usr/bin/env bash
# ringcast's Pusher path against its native path at the same fixed load: N subscribers on one
# channel, R msg/s of 64 B from 4 publishers, for D seconds; the server on one core, the harness
# on another, a fresh server per run, Pusher and raw interleaved, REPEAT times each. The number
# compared is deliveries per server CPU-second at equal deliveries/s (issue 13: Pusher >= 0.8x
# raw), which the throughput scenario cannot give: its steps stop at different rates.
#   bench/pusher/fanout-per-core.sh OUT_DIR      (env: N=4000 RATE=288 DURATION=20s REPEAT=2
#                                                 RC=target/release/ringcast B=target/release/ringcast-bench)
# Writes OUT_DIR/r<rep>-<pusher|raw>/ (the harness's files), OUT_DIR/commands.txt, OUT_DIR/load.txt
# (uptime before and after each run) and OUT_DIR/summary.md (python3 bench/pusher/summarize.py).
set -euo pipefail
OUT=${1:?usage: fanout-per-core.sh OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
RC=${RC:-$TARGET/release/ringcast}; B=${B:-$TARGET/release/ringcast-bench}
N=${N:-4000}; RATE=${RATE:-288}; DURATION=${DURATION:-20s}; REPEAT=${REPEAT:-2}
mkdir -p "$OUT"; : >"$OUT/commands.txt"; : >"$OUT/load.txt"
APP=(--app-id 1 --app-key app-key --app-secret app-secret)
SERVER=(--listen 127.0.0.1:19150 --api-listen 127.0.0.1:19151 --shards 1 --cores 0 "${APP[@]}")
for rep in $(seq 1 "$REPEAT"); do
  for path in pusher raw; do
    if [ "$path" = pusher ]; then
      WIRE=(--protocol pusher "${APP[@]}" --publish-host 127.0.0.1:19150)
    else
      WIRE=(--publish-host 127.0.0.1:19151)
    fi
    cmd=("$B" fanout --connections "$N" --rate "$RATE" --duration "$DURATION" --publishers 4
         --payload-bytes 64 --ramp-rate 2000 --channel-prefix pusher-vs-raw "${WIRE[@]}"
         --host 127.0.0.1:19150 --server-cores 0 --client-cores 1 --output-dir "$OUT/r$rep-$path"
         --spawn "$RC" -- "${SERVER[@]}")
    printf '%q ' "${cmd[@]}" >>"$OUT/commands.txt"; echo >>"$OUT/commands.txt"
    echo "r$rep-$path before: $(uptime)" >>"$OUT/load.txt"
    timeout 300 "${cmd[@]}" >"$OUT/r$rep-$path.stdout" 2>&1 || echo "r$rep-$path: harness exit $?" >>"$OUT/load.txt"
    echo "r$rep-$path after:  $(uptime)" >>"$OUT/load.txt"
    sleep 2
  done
done
python3 "$HERE/summarize.py" "$OUT" >"$OUT/summary.md"
cat "$OUT/summary.md"
