# Shared helpers for bench/peers/*/install.sh and start.sh. Source it:
#   . "$(dirname "$0")/../common.sh"
# Nothing here downloads anything; installs go through apt/npm/cargo only.

# Say what we do, on stderr so stdout stays clean for callers.
say() { printf '[%s] %s\n' "${PEER:-peers}" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# Count the CPUs in a taskset-style list: "0", "0-1", "0,2-3" -> 1, 2, 3.
count_cores() {
  local spec=$1 n=0 part a b
  IFS=, read -ra parts <<<"$spec"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then a=${part%-*}; b=${part#*-}; n=$((n + b - a + 1))
    else n=$((n + 1)); fi
  done
  echo "$n"
}

# apt_ensure PKG... : install the Debian packages that are missing (idempotent).
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    say "apt: already installed: $*"
    return 0
  fi
  say "apt: installing ${missing[*]}"
  # Only refresh the lists when they are missing or older than a day.
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    apt-get update -q >&2
  fi
  # policy-rc.d (or no init) keeps packaged services (nginx, pushpin) from starting.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; }
}

# Print an installed Debian package's version.
deb_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }

# Defaults every start.sh uses.
peer_env() {
  CORES=${CORES:-0}
  NCORES=$(count_cores "$CORES")
  PORT=${PORT:-$1}
  export CORES NCORES PORT
}

# Pusher peers (soketi, sockudo): one app, from PUSHER_APP_ID/_KEY/_SECRET. Defaults: id 1 (the
# Python `pusher` SDK accepts only numeric app ids), key app-key, secret app-secret; the client
# scripts in tests/clients use the same defaults.
pusher_env() {
  PUSHER_APP_ID=${PUSHER_APP_ID:-1}
  PUSHER_APP_KEY=${PUSHER_APP_KEY:-app-key}
  PUSHER_APP_SECRET=${PUSHER_APP_SECRET:-app-secret}
  export PUSHER_APP_ID PUSHER_APP_KEY PUSHER_APP_SECRET
}
