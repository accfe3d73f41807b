#!/usr/bin/env bash
# Sockudo peer (Rust, tokio; a Pusher Channels protocol 7 server): `cargo install sockudo`
# from crates.io, local adapter only (no Redis/NATS/SQL backends, no OpenTelemetry), into
# ./root (gitignored; CARGO_TARGET_DIR ./target). Needs Debian's protobuf-compiler and
# libprotobuf-dev (build scripts of its dependencies run protoc). Idempotent: a binary of the
# pinned version already in ./root is kept.
# Env: SOCKUDO_VERSION (default 5.2.0), CARGO_JOBS (default 1: the build takes long; run it
# under `nice -n 19` on a shared machine).
set -euo pipefail
PEER=sockudo; HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../common.sh"
VERSION=${SOCKUDO_VERSION:-5.2.0}
command -v cargo >/dev/null || die "cargo not found (rustup toolchain expected)"
apt_ensure protobuf-compiler libprotobuf-dev
BIN="$HERE/root/bin/sockudo"
if [ -x "$BIN" ] && [ "$(cat "$HERE/root/VERSION" 2>/dev/null)" = "$VERSION" ]; then
  say "sockudo $VERSION already installed in root/bin: ready"
  exit 0
fi
export CARGO_TARGET_DIR="$HERE/target"
say "cargo install sockudo@$VERSION --locked --no-default-features --features local -j ${CARGO_JOBS:-1} ($(cargo -V))"
start=$(date +%s)
cargo install sockudo --version "=$VERSION" --locked --no-default-features --features local \
  --root "$HERE/root" -j "${CARGO_JOBS:-1}" --force 2>&1 | tail -n 5 >&2
[ -x "$BIN" ] || die "build failed"
echo "$VERSION" >"$HERE/root/VERSION"
say "built root/bin/sockudo $VERSION in $(( $(date +%s) - start )) s: ready"
