#!/usr/bin/env bash
# Runs soketi (bench/peers/soketi) for tests/clients/validate.py: user authentication on (soketi
# ignores pusher:signin without it; the 30 s sign-in deadline it then enforces is raised to an
# hour), client events on, webhooks of every kind soketi sends to $WEBHOOK_URL.
#   python3 tests/clients/validate.py --port 18107 --max-payload-bytes 102400 \
#     --server-cmd 'exec tests/clients/soketi-server.sh'
set -euo pipefail
: "${PORT:?PORT is required}" "${WEBHOOK_URL:?WEBHOOK_URL is required}"
cd "$(dirname "$0")/../.."
export SOKETI_USER_AUTH=1 SOKETI_USER_AUTHENTICATION_TIMEOUT=3600000 SOKETI_CLIENT_EVENTS=1
export SOKETI_WEBHOOKS="[{\"url\":\"$WEBHOOK_URL\",\"event_types\":[\"channel_occupied\",\"channel_vacated\",\"member_added\",\"member_removed\",\"client_event\",\"cache_miss\"]}]"
exec bench/peers/soketi/start.sh
