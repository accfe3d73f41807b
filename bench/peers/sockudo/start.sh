#!/usr/bin/env bash
# Start Sockudo in the foreground on 127.0.0.1:$PORT (default 18108), pinned to $CORES
# (default 0). Tokio multi-thread runtime: one worker per CPU it may run on, so taskset sets the
# worker count (N = number of cores in $CORES).
#
# Speaks Pusher protocol 7, not the peers' raw /ws + /publish interface: WebSocket at
# /app/$PUSHER_APP_KEY, HTTP API at /apps/$PUSHER_APP_ID/... (signed). App from
# PUSHER_APP_ID/_KEY/_SECRET (common.sh defaults: 1/app-key/app-secret), through Sockudo's
# SOCKUDO_DEFAULT_APP_* variables. Everything is configured through the environment; Sockudo
# runs from an empty directory under /tmp/ringcast-peers/ so no config/config.json is picked up.
#
# Sockudo's defaults would throttle a benchmark or a test suite from one address, so they are
# raised here (env to override): per-IP rate limiter off (its defaults: 100 API requests and 20
# WebSocket connects per 60 s), app limits of 100 connections, 100 backend events/s and 100
# read requests/s raised to SOCKUDO_MAX (default 1000000). Client events on
# (SOCKUDO_CLIENT_EVENTS=0 for off); user authentication off (SOCKUDO_USER_AUTH=1: required,
# which Sockudo needs to answer pusher:signin). Webhooks have no environment variable (they need
# an apps config file): not configured. Logging: errors only (RUST_LOG=error). SIGTERM: Sockudo
# waits SHUTDOWN_GRACE_PERIOD seconds (its default 10, here 1) and exits 0.
# Listeners: HOST=127.0.0.1:$PORT only; metrics off and bound to 127.0.0.1:$((PORT+10000)) in
# case they are turned on; MCP server and Unix socket off.
set -euo pipefail
PEER=sockudo; HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../common.sh"
peer_env 18108
pusher_env
BIN="$HERE/root/bin/sockudo"
[ -x "$BIN" ] || die "not built: run install.sh"
RUN=/tmp/ringcast-peers/sockudo-$PORT
mkdir -p "$RUN"
MAX=${SOCKUDO_MAX:-1000000}
ulimit -n 20000 2>/dev/null || true
export HOST=127.0.0.1 PORT
export METRICS_ENABLED=false METRICS_HOST=127.0.0.1 METRICS_PORT=$((PORT + 10000))
export MCP_ENABLED=false UNIX_SOCKET_ENABLED=false SSL_ENABLED=false
export RATE_LIMITER_ENABLED=false
export SOCKUDO_DEFAULT_APP_ID=$PUSHER_APP_ID SOCKUDO_DEFAULT_APP_KEY=$PUSHER_APP_KEY SOCKUDO_DEFAULT_APP_SECRET=$PUSHER_APP_SECRET
export SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=$MAX SOCKUDO_MAX_CONNECTIONS=$MAX
export SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=$MAX SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND=$MAX
export SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND=${SOCKUDO_CLIENT_EVENTS_PER_S:-$MAX}
export SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES=$([ "${SOCKUDO_CLIENT_EVENTS:-1}" = 1 ] && echo true || echo false)
export SOCKUDO_DEFAULT_APP_ENABLE_USER_AUTHENTICATION=$([ "${SOCKUDO_USER_AUTH:-0}" = 1 ] && echo true || echo false)
export SHUTDOWN_GRACE_PERIOD=${SHUTDOWN_GRACE_PERIOD:-1}
export DEBUG=false RUST_LOG=${RUST_LOG:-error} LOG_COLORS_ENABLED=false
export SOCKUDO_OTEL_ENABLED=false
say "sockudo $(cat "$HERE/root/VERSION" 2>/dev/null) on 127.0.0.1:$PORT, cores $CORES ($NCORES tokio workers), app id $PUSHER_APP_ID key $PUSHER_APP_KEY"
cd "$RUN"
exec taskset -c "$CORES" "$BIN"
