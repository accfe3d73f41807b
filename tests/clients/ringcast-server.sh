#!/usr/bin/env bash
# Runs ringcast for tests/clients/validate.py, configured like the soketi run: one app from
# PUSHER_APP_ID/_KEY/_SECRET, client events and subscription count events on, webhooks (every kind) to $WEBHOOK_URL, on
# 127.0.0.1:$PORT. The apps file follows src/apps.rs's TOML format.
#   python3 tests/clients/validate.py --port 18100 --server-cmd 'exec tests/clients/ringcast-server.sh'
# Env: RINGCAST_BIN (default target/release/ringcast), RINGCAST_ARGS (extra flags).
set -euo pipefail
: "${PORT:?PORT is required}" "${WEBHOOK_URL:?WEBHOOK_URL is required}"
apps=$(mktemp /tmp/ringcast-clients-apps.XXXXXX.toml)
trap 'rm -f "$apps"' EXIT
cat >"$apps" <<TOML
[[app]]
id = "${PUSHER_APP_ID:-1}"
key = "${PUSHER_APP_KEY:-app-key}"
secret = "${PUSHER_APP_SECRET:-app-secret}"

[app.limits]
client_events = "on"
subscription_count_events = "on"

[[app.webhooks]]
url = "$WEBHOOK_URL"
TOML
# Not exec: the trap removes the apps file when ringcast exits (SIGTERM is passed on).
"${RINGCAST_BIN:-target/release/ringcast}" --listen "127.0.0.1:$PORT" --api-listen 127.0.0.1:0 --apps "$apps" ${RINGCAST_ARGS:-} &
child=$!
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; rm -f "$apps"' TERM INT
wait "$child"
