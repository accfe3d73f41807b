#!/usr/bin/env bash
# Start the Node.js ws peer in the foreground on 127.0.0.1:$PORT (default 18103),
# pinned to $CORES (default 0). One process, one event loop, whatever $CORES holds.
set -euo pipefail
PEER=node-ws; HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../common.sh"
peer_env 18103
ulimit -n 20000 2>/dev/null || true
say "node ws on 127.0.0.1:$PORT, cores $CORES (1 event loop)"
NODE_ENV=production exec taskset -c "$CORES" node "$HERE/server.js"
