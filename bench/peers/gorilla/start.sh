#!/usr/bin/env bash
# Start the gorilla/websocket hub peer in the foreground on 127.0.0.1:$PORT
# (default 18104), pinned to $CORES (default 0), GOMAXPROCS = number of cores.
set -euo pipefail
PEER=gorilla; HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../common.sh"
peer_env 18104
[ -x "$HERE/bin/gorilla-hub" ] || die "not built: run install.sh"
ulimit -n 20000 2>/dev/null || true
say "gorilla hub on 127.0.0.1:$PORT, cores $CORES, GOMAXPROCS=$NCORES"
GOMAXPROCS=$NCORES exec taskset -c "$CORES" "$HERE/bin/gorilla-hub"
