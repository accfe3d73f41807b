#!/usr/bin/env bash
# Pushpin peer: Debian pushpin (pulls condure + zurl) and Node.js for the GRIP origin
# (origin.js uses only Node's stdlib). Idempotent.
set -euo pipefail
PEER=pushpin; HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../common.sh"
apt_ensure pushpin condure zurl
command -v node >/dev/null || apt_ensure nodejs
node --check "$HERE/origin.js"
say "pushpin $(deb_version pushpin), condure $(deb_version condure), zurl $(deb_version zurl), origin on node $(node -v): ready"
