#!/usr/bin/env bash
# Start Pushpin + its GRIP origin in the foreground. Clients use 127.0.0.1:$PORT
# (default 18102); the origin listens on $ORIGIN_PORT (default PORT+10000);
# Pushpin's publish API is on 5561+$PUSHPIN_PORT_OFFSET (default offset 0).
# Everything (pushpin runner, condure, pushpin-proxy, pushpin-handler, origin)
# is pinned to $CORES. SIGTERM stops both and exits 0.
# Knobs: PUSHPIN_CLIENT_BUFFER (default 131072; Debian's 8192 drops/fragments
# messages, see pushpin.conf.in), PUSHPIN_MESSAGE_RATE / PUSHPIN_MESSAGE_HWM
# (default 1000000; Debian's 2500/s and 25000 throttle and drop fan-out).
set -euo pipefail
PEER=pushpin; HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../common.sh"
peer_env 18102
ORIGIN_PORT=${ORIGIN_PORT:-$((PORT + 10000))}
OFFSET=${PUSHPIN_PORT_OFFSET:-0}
export ORIGIN_PORT PUSHPIN_PUBLISH_PORT=$((5561 + OFFSET))
RUN=${RUN_DIR:-/tmp/ringcast-peers/pushpin-$PORT}
rm -rf "$RUN"; mkdir -p "$RUN/run" "$RUN/log"
sed -e "s|@RUN@|$RUN|g" -e "s|@PORT@|$PORT|g" -e "s|@OFFSET@|$OFFSET|g" \
    -e "s|@BUFFER@|${PUSHPIN_CLIENT_BUFFER:-131072}|g" \
    -e "s|@MESSAGE_RATE@|${PUSHPIN_MESSAGE_RATE:-1000000}|g" \
    -e "s|@MESSAGE_HWM@|${PUSHPIN_MESSAGE_HWM:-1000000}|g" \
    "$HERE/pushpin.conf.in" >"$RUN/pushpin.conf"
# Every request goes to the origin; WebSockets as WebSocket-over-HTTP.
echo "* 127.0.0.1:$ORIGIN_PORT,over_http" >"$RUN/routes"
ulimit -n 20000 2>/dev/null || true

say "pushpin on 127.0.0.1:$PORT, origin 127.0.0.1:$ORIGIN_PORT, publish API :$PUSHPIN_PUBLISH_PORT, cores $CORES, run dir $RUN"
taskset -c "$CORES" node "$HERE/origin.js" &
origin=$!
taskset -c "$CORES" pushpin --config "$RUN/pushpin.conf" --loglevel 0 --merge-output &
pp=$!
stop() { kill -TERM "$pp" "$origin" 2>/dev/null || true; wait "$pp" "$origin" 2>/dev/null || true; exit 0; }
trap stop TERM INT
wait -n "$pp" "$origin" || true
say "a component exited; stopping"
stop
