#!/usr/bin/env bash
# Runs Sockudo (bench/peers/sockudo's binary) for tests/clients/validate.py WITH webhooks: the
# same environment as bench/peers/sockudo/start.sh (everything on 127.0.0.1:$PORT, rate limiter,
# metrics, MCP and Unix socket off, 1 s shutdown grace) and sockudo-server.sh (client events
# on, user authentication on with an hour's sign-in deadline), except that the app is not given
# through SOCKUDO_DEFAULT_APP_*: Sockudo takes webhooks only from an app in a config file
# (`app_manager.array.apps[].webhooks`), and any SOCKUDO_DEFAULT_APP_ID/_KEY/_SECRET in the
# environment replaces the file's apps (sockudo-core 5.2.0 src/options/env/apps.rs). The app
# goes into a JSON config (Sockudo's legacy flat app shape) passed with --config, with one
# webhook to $WEBHOOK_URL for the event types soketi-server.sh asks soketi for. Sockudo's
# default queue driver is Redis (none here): QUEUE_DRIVER=memory.
#   python3 tests/clients/validate.py --port 18108 --max-payload-bytes 102400 \
#     --server-cmd 'exec tests/clients/sockudo-webhooks-server.sh'
set -euo pipefail
: "${PORT:?PORT is required}" "${WEBHOOK_URL:?WEBHOOK_URL is required}"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/bench/peers/sockudo/root/bin/sockudo"
[ -x "$BIN" ] || { echo "sockudo not built: run bench/peers/sockudo/install.sh" >&2; exit 1; }
MAX=${SOCKUDO_MAX:-1000000}
RUN=/tmp/ringcast-peers/sockudo-webhooks-$PORT
mkdir -p "$RUN"
cat >"$RUN/config.json" <<JSON
{
  "app_manager": {
    "driver": "memory",
    "array": {
      "apps": [
        {
          "id": "${PUSHER_APP_ID:-1}",
          "key": "${PUSHER_APP_KEY:-app-key}",
          "secret": "${PUSHER_APP_SECRET:-app-secret}",
          "enabled": true,
          "max_connections": $MAX,
          "enable_client_messages": true,
          "enable_user_authentication": true,
          "max_backend_events_per_second": $MAX,
          "max_client_events_per_second": $MAX,
          "max_read_requests_per_second": $MAX,
          "max_event_payload_in_kb": 100,
          "webhooks": [
            {
              "url": "$WEBHOOK_URL",
              "event_types": ["channel_occupied", "channel_vacated", "member_added",
                              "member_removed", "client_event", "cache_miss"]
            }
          ]
        }
      ]
    }
  }
}
JSON
unset SOCKUDO_DEFAULT_APP_ID SOCKUDO_DEFAULT_APP_KEY SOCKUDO_DEFAULT_APP_SECRET SOCKUDO_DEFAULT_APP_ENABLED
ulimit -n 20000 2>/dev/null || true
export HOST=127.0.0.1 PORT
export METRICS_ENABLED=false METRICS_HOST=127.0.0.1 METRICS_PORT=$((PORT + 10000))
export MCP_ENABLED=false UNIX_SOCKET_ENABLED=false SSL_ENABLED=false
export RATE_LIMITER_ENABLED=false SOCKUDO_MAX_CONNECTIONS=$MAX
export USER_AUTHENTICATION_TIMEOUT=3600000 QUEUE_DRIVER=memory
export SHUTDOWN_GRACE_PERIOD=${SHUTDOWN_GRACE_PERIOD:-1}
export DEBUG=false RUST_LOG=${RUST_LOG:-error} LOG_COLORS_ENABLED=false
export SOCKUDO_OTEL_ENABLED=false
cd "$RUN"
exec taskset -c "${CORES:-0}" "$BIN" --config "$RUN/config.json"
