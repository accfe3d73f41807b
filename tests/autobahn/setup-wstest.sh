#!/usr/bin/env bash
# Install the reference Autobahn|Testsuite (`wstest`, Python 2.7 only) into
# $AUTOBAHN_HOME without touching system paths:
#   1. Debian bullseye's python2.7 .debs (+ libssl1.1/libffi7, which bookworm
#      lacks) are fetched with a private apt config (own sources.list, state,
#      cache, lists) and unpacked with `dpkg -x` into $AUTOBAHN_HOME/py27/root.
#   2. virtualenv<20.22 (last line that can create 2.7 envs) is installed in a
#      python3 venv, and makes a 2.7 venv at $AUTOBAHN_HOME/wstest-venv.
#   3. autobahntestsuite and its deps are installed there from the exact pins in
#      wstest-requirements.txt (wsaccel is compiled: needs gcc).
#   4. $AUTOBAHN_HOME/bin/wstest wraps it with the LD_LIBRARY_PATH it needs.
# Idempotent; a rerun with everything in place takes well under a second.
# Prints the path of the wstest wrapper on stdout.
set -euo pipefail
. "$(dirname "$0")/common.sh"

REQS="$AUTOBAHN_DIR/wstest-requirements.txt"
PY27="$AUTOBAHN_HOME/py27"
ROOT="$PY27/root"
TOOLS="$AUTOBAHN_HOME/tools-venv"
VENV="$AUTOBAHN_HOME/wstest-venv"
WRAPPER="$AUTOBAHN_HOME/bin/wstest"
STAMP="$VENV/.ringcast-stamp"
LIBDIR="$ROOT/usr/lib/x86_64-linux-gnu"
VIRTUALENV_PIN="virtualenv==20.21.1"
DEB_PKGS=(python2.7 python2.7-minimal libpython2.7-minimal libpython2.7-stdlib
          python2.7-dev libpython2.7-dev libpython2.7 libssl1.1 libffi7)

want_stamp() { { echo "pkgs=${DEB_PKGS[*]} $VIRTUALENV_PIN"; cat "$REQS"; } | sha256sum | cut -d' ' -f1; }

mkdir -p "$AUTOBAHN_HOME/bin"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(want_stamp)" ] && [ -x "$WRAPPER" ] \
   && "$WRAPPER" --autobahnversion >/dev/null 2>&1; then
    log "wstest already installed in $VENV"
    echo "$WRAPPER"
    exit 0
fi

[ "$(uname -m)" = x86_64 ] || die "only x86_64 is supported (bullseye amd64 python2.7)"
command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "needs a Debian-like system (apt-get, dpkg)"
command -v gcc >/dev/null 2>&1 || apt_install gcc libc6-dev

# --- 1. python2.7 from Debian bullseye, private apt config -----------------
if ! LD_LIBRARY_PATH="$LIBDIR" "$ROOT/usr/bin/python2.7" -c 'import ssl, ctypes, hashlib, zlib' 2>/dev/null; then
    # Same mirror as the system's apt sources (deb822 *.sources or *.list).
    mirror="${AUTOBAHN_DEBIAN_MIRROR:-}"
    secmirror="${AUTOBAHN_DEBIAN_SECURITY_MIRROR:-}"
    uris="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
              | sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p';
            cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
              | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n')"
    [ -n "$mirror" ] || mirror="$(echo "$uris" | grep -E '/debian/?$' | head -n1 || true)"
    [ -n "$secmirror" ] || secmirror="$(echo "$uris" | grep -E '/debian-security/?$' | head -n1 || true)"
    [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list*; set AUTOBAHN_DEBIAN_MIRROR"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -f "$keyring" ] || apt_install debian-archive-keyring
    A="$PY27/apt"
    mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/empty.d" "$PY27/debs"
    : > "$A/status"
    {
        echo "deb [signed-by=$keyring] ${mirror%/} bullseye main"
        [ -z "$secmirror" ] || echo "deb [signed-by=$keyring] ${secmirror%/} bullseye-security main"
    } > "$A/sources.list"
    APT_OPTS=(-o "Dir::Etc::sourcelist=$A/sources.list" -o "Dir::Etc::sourceparts=$A/empty.d"
              -o "Dir::Etc::preferencesparts=$A/empty.d" -o "Dir::State=$A"
              -o "Dir::State::lists=$A/lists" -o "Dir::State::status=$A/status"
              -o "Dir::Cache=$A/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root"
              -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
              -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
              -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
              -o "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false")
    log "apt-get update (private config, bullseye from $mirror)"
    apt-get "${APT_OPTS[@]}" -qq update >&2 || die "private apt-get update failed"
    log "apt-get download ${DEB_PKGS[*]}"
    rm -f "$PY27/debs/"*.deb
    (cd "$PY27/debs" && apt-get "${APT_OPTS[@]}" -qq download "${DEB_PKGS[@]}" >&2) \
        || die "apt-get download failed"
    rm -rf "$ROOT.tmp" && mkdir -p "$ROOT.tmp"
    for deb in "$PY27/debs/"*.deb; do dpkg -x "$deb" "$ROOT.tmp"; done
    rm -rf "$ROOT" && mv "$ROOT.tmp" "$ROOT"
    LD_LIBRARY_PATH="$LIBDIR" "$ROOT/usr/bin/python2.7" -c 'import ssl, ctypes, hashlib, zlib' \
        || die "unpacked python2.7 does not work"
    rm -rf "$VENV"   # new interpreter: rebuild the venv
fi
log "python2.7: $(LD_LIBRARY_PATH="$LIBDIR" "$ROOT/usr/bin/python2.7" -c 'import sys; print(sys.version.split()[0])')"

# --- 2. virtualenv<20.22 in a python3 venv, then the 2.7 venv ----------------
if ! "$TOOLS/bin/python" -m pip show -q virtualenv 2>/dev/null \
   || [ "$("$TOOLS/bin/python" -c 'import virtualenv; print(virtualenv.__version__)' 2>/dev/null)" != "${VIRTUALENV_PIN#*==}" ]; then
    make_py3_venv "$TOOLS"
    log "pip install $VIRTUALENV_PIN (tools venv)"
    "$TOOLS/bin/python" -m pip install -q "$VIRTUALENV_PIN" >&2 || die "pip install $VIRTUALENV_PIN failed"
fi

export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import ssl' 2>/dev/null; then
    rm -rf "$VENV"
    log "virtualenv -p python2.7 $VENV"
    "$TOOLS/bin/virtualenv" -q --app-data "$AUTOBAHN_HOME/virtualenv-appdata" \
        -p "$ROOT/usr/bin/python2.7" "$VENV" >&2 || die "virtualenv failed"
fi

# --- 3. autobahntestsuite, exact pins ---------------------------------------
log "pip install -r wstest-requirements.txt (python2.7)"
# Debian's sysconfig points at /usr/include/python2.7: add the private headers.
CFLAGS="-I$ROOT/usr/include -I$ROOT/usr/include/python2.7 ${CFLAGS:-}" \
    "$VENV/bin/python" -m pip install -q --no-warn-script-location -r "$REQS" 2>&1 \
    | grep -v -e 'DEPRECATION: Python 2.7' >&2 || true
"$VENV/bin/python" -c 'import autobahntestsuite, twisted, autobahn, wsaccel' \
    || die "pip install of autobahntestsuite failed"

# --- 4. wrapper ---------------------------------------------------------------
cat > "$WRAPPER.tmp" <<WRAP
#!/bin/sh
# Generated by tests/autobahn/setup-wstest.sh
LD_LIBRARY_PATH="$LIBDIR\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$VENV/bin/wstest" "\$@"
WRAP
chmod +x "$WRAPPER.tmp" && mv "$WRAPPER.tmp" "$WRAPPER"
"$WRAPPER" --autobahnversion >&2 || die "wstest does not run"
want_stamp > "$STAMP"
log "wstest installed: $WRAPPER"
echo "$WRAPPER"
