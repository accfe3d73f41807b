#!/usr/bin/env bash
# Node.js ws peer: `ws` (+ the optional native `bufferutil` the ws README suggests) from npm. Idempotent.
set -euo pipefail
PEER=node-ws; HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../common.sh"
command -v node >/dev/null || apt_ensure nodejs npm
cd "$HERE"
if [ -f package-lock.json ]; then
  say "npm ci (from package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error >&2
else
  say "npm install"
  npm install --no-audit --no-fund --loglevel=error >&2
fi
say "node $(node -v), ws $(node -p 'require("ws/package.json").version'), bufferutil $(node -p 'try{require("bufferutil/package.json").version}catch(e){"absent"}'): ready"
