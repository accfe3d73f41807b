#!/usr/bin/env bash
# Known-good reference echo server, ONLY for validating the Autobahn tooling
# before ringcast exists: Python `websockets` (pinned) in
# $AUTOBAHN_HOME/reference-venv, serving ws://HOST:PORT/echo in the foreground
# (Ctrl-C / SIGTERM to stop). 16 MiB message limit, no permessage-deflate.
#   usage: reference/reference-echo.sh [HOST:PORT]     (default 127.0.0.1:9001)
set -euo pipefail
. "$(dirname "$0")/../common.sh"

WEBSOCKETS_PIN="websockets==17.4"
VENV="$AUTOBAHN_HOME/reference-venv"
parse_hostport "${1:-127.0.0.1:9001}"

mkdir -p "$AUTOBAHN_HOME"
if [ "$(cat "$VENV/.ringcast-stamp" 2>/dev/null)" != "$WEBSOCKETS_PIN" ]; then
    make_py3_venv "$VENV"
    log "pip install $WEBSOCKETS_PIN (reference venv)"
    "$VENV/bin/python" -m pip install -q "$WEBSOCKETS_PIN" >&2 || die "pip install $WEBSOCKETS_PIN failed"
    echo "$WEBSOCKETS_PIN" > "$VENV/.ringcast-stamp"
fi
# websockets refuses messages of more than 4096 fragments by default; the 9.3/9.4
# cases send 4 MiB in 64-byte fragments (65536 of them).
export WEBSOCKETS_MAX_FRAGMENTS="${WEBSOCKETS_MAX_FRAGMENTS:-1048576}"
exec "$VENV/bin/python" -u "$AUTOBAHN_DIR/reference/echo_server.py" --host "$(echo "$HOST" | tr -d "[]")" --port "$PORT"
