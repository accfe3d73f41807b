#!/usr/bin/env bash
# gorilla/websocket hub peer: Debian golang-go + golang-github-gorilla-websocket-dev,
# built offline in GOPATH mode (no module proxy). Idempotent.
set -euo pipefail
PEER=gorilla; HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../common.sh"
apt_ensure golang-go golang-github-gorilla-websocket-dev
cd "$HERE"
mkdir -p bin
say "go build (GO111MODULE=off, GOPATH=/usr/share/gocode) -> bin/gorilla-hub"
GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off CGO_ENABLED=0 \
  go build -trimpath -o bin/gorilla-hub .
say "$(go version | cut -d' ' -f3), gorilla/websocket $(deb_version golang-github-gorilla-websocket-dev): bin/gorilla-hub ready"
