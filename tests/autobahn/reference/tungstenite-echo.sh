#!/usr/bin/env bash
# Known-good reference echo server in Rust (tungstenite 0.30, thread per
# connection), ONLY for validating the Autobahn tooling before ringcast exists.
# Builds reference/tungstenite-echo (own workspace, Cargo.lock committed) into
# $AUTOBAHN_HOME/tungstenite-echo-target on first use (~1 min), then serves
# ws://HOST:PORT/echo in the foreground. 16 MiB message limit, no extensions.
#   usage: reference/tungstenite-echo.sh [HOST:PORT]     (default 127.0.0.1:9001)
set -euo pipefail
. "$(dirname "$0")/../common.sh"

command -v cargo >/dev/null || die "cargo not found"
export CARGO_TARGET_DIR="$AUTOBAHN_HOME/tungstenite-echo-target"
(cd "$AUTOBAHN_DIR/reference/tungstenite-echo" && cargo build --release --locked -q) \
    || die "cargo build of tungstenite-echo failed"
exec "$CARGO_TARGET_DIR/release/tungstenite-echo" "${1:-127.0.0.1:9001}"
