#!/usr/bin/env bash
# Installs what the real-client tests need, on a fresh Debian machine or again on one that has
# it (idempotent, fast when nothing changed), and says what it did:
#   - Node.js + npm (Debian) if `node` is missing;
#   - Debian's `chromium` (for the browser test, driven by playwright-core through
#     executablePath /usr/bin/chromium: no browser download) when /usr/bin/chromium is absent;
#   - `npm ci` in tests/clients from package-lock.json (pusher-js, pusher, laravel-echo,
#     centrifuge, ws, playwright-core), skipped when node_modules matches the lockfile;
#   - a Python venv tests/clients/.venv with requirements.txt (PyPI `pusher`,
#     `centrifuge-python`, pinned with their dependencies), skipped when it matches.
# apt runs with sudo when not root; `apt-get update` runs before any apt install.
# Env: SKIP_BROWSER=1 skips chromium. Usage: bash tests/clients/install.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
say() { printf '[clients/install] %s\n' "$*" >&2; }
start=$(date +%s)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
updated=""
aptlog=$(mktemp /tmp/ringcast-clients-apt.XXXXXX.log)
apt_install() {
  if [ -z "$updated" ]; then
    say "apt-get update"
    # Another apt (an unattended upgrade, a second installer) may hold the lock: wait for it.
    # (DPkg::Lock::Timeout does not cover the lists lock that `update` takes: retry.)
    local try
    for try in $(seq 60); do
      $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 && break
      [ "$try" -lt 60 ] || exit 1
      sleep 5
    done
    updated=1
  fi
  say "apt-get install $* (log: $aptlog)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >"$aptlog" 2>&1 ||
    { tail -n 20 "$aptlog" >&2; exit 1; }
}

if command -v node >/dev/null && command -v npm >/dev/null; then
  say "node $(node -v), npm $(npm -v): present"
else
  apt_install nodejs npm
fi

if [ "${SKIP_BROWSER:-0}" = 1 ]; then
  say "chromium: skipped (SKIP_BROWSER=1)"
elif [ -x /usr/bin/chromium ]; then
  say "chromium: present ($(/usr/bin/chromium --version 2>/dev/null | head -1))"
else
  apt_install chromium
  say "chromium: installed ($(/usr/bin/chromium --version 2>/dev/null | head -1))"
fi

# npm ci wipes node_modules: run it only when the lockfile changed since the last one.
stamp=node_modules/.ringcast-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "npm: node_modules matches package-lock.json"
else
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" >"$stamp"
fi

venv=.venv
stamp=$venv/.ringcast-requirements.sha256
want=$( (python3 --version; cat requirements.txt) | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c 'import pusher, centrifuge' 2>/dev/null; then
  say "python: $venv matches requirements.txt"
else
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3-venv; fi
  say "python: creating $venv from requirements.txt"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r requirements.txt >&2
  echo "$want" >"$stamp"
fi

version() { node -p "require('./node_modules/$1/package.json').version"; }
say "ready in $(( $(date +%s) - start )) s: node $(node -v), pusher-js $(version pusher-js), pusher $(version pusher), laravel-echo $(version laravel-echo), centrifuge $(version centrifuge), ws $(version ws), playwright-core $(version playwright-core); python: $("$venv/bin/python" -c 'import importlib.metadata as m; print("pusher", m.version("pusher") + ",", "centrifuge-python", m.version("centrifuge-python"))')"
