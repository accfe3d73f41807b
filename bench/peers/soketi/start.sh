#!/usr/bin/env bash
# Start soketi in the foreground on 127.0.0.1:$PORT (default 18107), pinned to $CORES
# (default 0), on Node 18 with the native uWS binary. One process, one event loop, whatever
# $CORES holds (soketi's own multi-process mode is pm2, which this peer does not use).
#
# Speaks Pusher protocol 7, not the peers' raw /ws + /publish interface: WebSocket at
# /app/$PUSHER_APP_KEY, HTTP API at /apps/$PUSHER_APP_ID/... (signed). App from
# PUSHER_APP_ID/_KEY/_SECRET (common.sh defaults: 1/app-key/app-secret).
# Env: SOKETI_CLIENT_EVENTS (default 1) enables client events; SOKETI_USER_AUTH (default 0): 1
# enables user authentication, which soketi needs to answer pusher:signin at all (without it
# soketi ignores pusher:signin) and which closes connections not signed in within 30 s (4009);
# SOKETI_WEBHOOKS (a JSON array in soketi's app format) sets the app's webhooks; SOKETI_DEBUG=1
# logs every frame.
#
# Everything binds 127.0.0.1. soketi's defaults do not: the HTTP/WS server (0.0.0.0:6001), its
# metrics/usage server (0.0.0.0:9601, listening even with metrics off) and its UDP node discovery
# (node-discover on 0.0.0.0:11002, hellos broadcast to 255.255.255.255 every 500 ms). Here the
# metrics server listens on 127.0.0.1:$((PORT+10000)) and discovery binds
# 127.0.0.1:$((PORT+20000)) and sends its hellos by unicast to that same loopback address.
# The bind address of discovery has no SOKETI_* variable: it is set through soketi's --config
# JSON file (dot-path keys), written under /tmp/ringcast-peers/soketi-$PORT/.
set -euo pipefail
PEER=soketi; HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../common.sh"
peer_env 18107
pusher_env
NODE18="$HERE/node_modules/.bin/node"
[ -x "$NODE18" ] || die "not installed: run install.sh"
abi=$("$NODE18" -p process.versions.modules)
native="$HERE/node_modules/uWebSockets.js/binaries/uws_linux_x64_$abi.node"
"$NODE18" -e "require(process.argv[1])" "$native" || die "uWS native binary did not load: $native (soketi would fall back to slow JS)"

RUN=/tmp/ringcast-peers/soketi-$PORT
mkdir -p "$RUN"
METRICS_PORT=$((PORT + 10000))
DISCOVERY_PORT=$((PORT + 20000))
cat >"$RUN/config.json" <<JSON
{
  "host": "127.0.0.1",
  "port": $PORT,
  "metrics.enabled": false,
  "metrics.host": "127.0.0.1",
  "metrics.port": $METRICS_PORT,
  "cluster.address": "127.0.0.1",
  "cluster.hostname": "127.0.0.1",
  "cluster.port": $DISCOVERY_PORT,
  "cluster.unicast": "127.0.0.1",
  "shutdownGracePeriod": 500
}
JSON
ulimit -n 20000 2>/dev/null || true
say "soketi on 127.0.0.1:$PORT (metrics 127.0.0.1:$METRICS_PORT, discovery udp 127.0.0.1:$DISCOVERY_PORT), cores $CORES, node $("$NODE18" -v) + native uWS (ABI $abi), app id $PUSHER_APP_ID key $PUSHER_APP_KEY"
# soketi reads a .env from its working directory (dotenv): run it from the empty $RUN.
cd "$RUN"
export SOKETI_DEFAULT_APP_ID=$PUSHER_APP_ID SOKETI_DEFAULT_APP_KEY=$PUSHER_APP_KEY SOKETI_DEFAULT_APP_SECRET=$PUSHER_APP_SECRET
export SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES=$([ "${SOKETI_CLIENT_EVENTS:-1}" = 1 ] && echo true || echo false)
export SOKETI_DEFAULT_APP_USER_AUTHENTICATION=$([ "${SOKETI_USER_AUTH:-0}" = 1 ] && echo true || echo false)
export SOKETI_DEFAULT_APP_MAX_CONNS=-1
export SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC=-1 SOKETI_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC=-1 SOKETI_DEFAULT_APP_MAX_READ_REQ_PER_SEC=-1
[ -n "${SOKETI_WEBHOOKS:-}" ] && export SOKETI_DEFAULT_APP_WEBHOOKS=$SOKETI_WEBHOOKS
[ "${SOKETI_DEBUG:-0}" = 1 ] && export SOKETI_DEBUG=true || unset SOKETI_DEBUG
NODE_ENV=production exec taskset -c "$CORES" "$NODE18" "$HERE/node_modules/@soketi/soketi/bin/server.js" start --config="$RUN/config.json"
