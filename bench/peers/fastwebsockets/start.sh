#!/usr/bin/env bash
# Start the fastwebsockets peer in the foreground on 127.0.0.1:$PORT (default 18106),
# pinned to $CORES (default 0); tokio worker_threads = number of cores.
set -euo pipefail
PEER=fastwebsockets; HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../common.sh"
peer_env 18106
BIN="$HERE/target/release/peer-fastwebsockets"
[ -x "$BIN" ] || die "not built: run install.sh"
ulimit -n 20000 2>/dev/null || true
say "fastwebsockets on 127.0.0.1:$PORT, cores $CORES, $NCORES worker threads"
WORKERS=$NCORES PORT=$PORT exec taskset -c "$CORES" "$BIN"
