#!/usr/bin/env bash
# tokio + hyper + fastwebsockets peer: crates from crates.io, `cargo build --release`
# into ./target (CARGO_TARGET_DIR pinned here). Idempotent (cargo rebuilds only on change).
set -euo pipefail
PEER=fastwebsockets; HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../common.sh"
command -v cargo >/dev/null || die "cargo not found (rustup toolchain expected)"
cd "$HERE"
export CARGO_TARGET_DIR="$HERE/target"
say "cargo build --release ($(cargo -V))"
locked=; [ -f Cargo.lock ] && locked=--locked
cargo build --release $locked 2>&1 | tail -n 3 >&2
[ -x target/release/peer-fastwebsockets ] || die "build failed"
vers=$(cargo tree -e normal --depth 1 --prefix none 2>/dev/null | grep -E '^(tokio|fastwebsockets|hyper) ' | sort -u | tr '\n' ' ')
say "built target/release/peer-fastwebsockets: ${vers}"
