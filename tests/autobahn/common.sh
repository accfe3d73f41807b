# Shared helpers for the Autobahn tooling scripts (sourced, not executed).
# shellcheck shell=bash disable=SC2034

AUTOBAHN_HOME="${AUTOBAHN_HOME:-$HOME/.cache/ringcast-autobahn}"
AUTOBAHN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '[autobahn] %s\n' "$*" >&2; }
die() { printf '[autobahn] ERROR: %s\n' "$*" >&2; exit 1; }

# apt_install PKG... : install missing Debian packages (as root, or through sudo).
apt_install() {
    local missing=() p sudo=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 \
            || die "missing system packages: ${missing[*]} (run as root: apt-get install -y ${missing[*]})"
        sudo=(sudo)
    fi
    log "apt-get install -y ${missing[*]}"
    if [ -z "${_AUTOBAHN_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq >&2 || die "apt-get update failed"
        _AUTOBAHN_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}

# python3 used to create the python3 venvs (needs >= 3.10 for kosoku).
pick_python3() {
    local py="${AUTOBAHN_PYTHON3:-python3}"
    if ! command -v "$py" >/dev/null 2>&1; then
        apt_install python3 python3-venv
        py=python3
    fi
    if ! "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        if [ "$py" = python3 ] && [ -x /usr/bin/python3 ]; then
            apt_install python3-venv
            py=/usr/bin/python3
        fi
        "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
            || die "$py must be Python >= 3.10 with the venv module"
    fi
    command -v "$py"
}

# make_py3_venv DIR : create (or keep) a python3 venv at DIR.
make_py3_venv() {
    local dir="$1" py
    if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c 'import sys' 2>/dev/null; then
        return 0
    fi
    py="$(pick_python3)"
    rm -rf "$dir"
    log "creating venv $dir with $py"
    "$py" -m venv "$dir" || die "venv creation failed"
}

# parse_hostport HOST:PORT -> sets HOST PORT
parse_hostport() {
    local hp="$1"
    hp="${hp#ws://}"; hp="${hp%%/*}"
    case "$hp" in
        \[*\]:*) HOST="${hp%:*}"; PORT="${hp##*:}" ;;
        *:*) HOST="${hp%:*}"; PORT="${hp##*:}" ;;
        *) die "expected HOST:PORT, got '$1'" ;;
    esac
    [[ "$PORT" =~ ^[0-9]+$ ]] || die "bad port in '$1'"
}

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$AUTOBAHN_HOME/pip-cache}"
