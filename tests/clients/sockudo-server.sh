#!/usr/bin/env bash
# Runs Sockudo (bench/peers/sockudo) for tests/clients/validate.py: user authentication on
# (needed for pusher:signin; its sign-in deadline raised to an hour), client events on. Sockudo
# takes webhooks only from an apps config file: skip that scenario.
#   python3 tests/clients/validate.py --port 18108 --max-payload-bytes 102400 --skip webhooks \
#     --server-cmd 'exec tests/clients/sockudo-server.sh'
set -euo pipefail
: "${PORT:?PORT is required}"
cd "$(dirname "$0")/../.."
export SOCKUDO_USER_AUTH=1 USER_AUTHENTICATION_TIMEOUT=3600000 SOCKUDO_CLIENT_EVENTS=1
exec bench/peers/sockudo/start.sh
