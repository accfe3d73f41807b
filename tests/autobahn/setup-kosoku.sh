#!/usr/bin/env bash
# Install kosoku (Autobahn case runner, Python 3 + Rust) into
# $AUTOBAHN_HOME/kosoku-venv. Idempotent: a rerun with the same pin is a no-op.
# Prints the path of the kosoku executable on stdout.
set -euo pipefail
. "$(dirname "$0")/common.sh"

KOSOKU_VERSION="${KOSOKU_VERSION:-0.1.0}"
VENV="$AUTOBAHN_HOME/kosoku-venv"
STAMP="$VENV/.ringcast-stamp"
WANT="kosoku==$KOSOKU_VERSION"

mkdir -p "$AUTOBAHN_HOME"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$VENV/bin/kosoku" -h >/dev/null 2>&1; then
    log "kosoku $KOSOKU_VERSION already installed in $VENV"
    echo "$VENV/bin/kosoku"
    exit 0
fi

make_py3_venv "$VENV"
log "pip install $WANT"
"$VENV/bin/python" -m pip install -q "$WANT" >&2 || die "pip install $WANT failed"
"$VENV/bin/kosoku" -h >/dev/null || die "kosoku does not run"
echo "$WANT" > "$STAMP"
log "kosoku $KOSOKU_VERSION installed in $VENV"
echo "$VENV/bin/kosoku"
