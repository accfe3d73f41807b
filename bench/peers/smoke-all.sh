#!/usr/bin/env bash
# Install, start, smoke-test and stop every peer (or the ones named), then print a
# PASS/FAIL table. Env: CORES (default 0) is passed to every start.sh; SKIP_INSTALL=1
# skips install.sh; VENV (default /tmp/ringcast-peers-venv) holds `websockets` for smoke.py.
# The Pusher-protocol peers (soketi, sockudo) are checked by smoke_pusher.py instead of smoke.py.
#   bench/peers/smoke-all.sh [peer...]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ALL=(nchan pushpin node-ws gorilla tokio-tungstenite fastwebsockets soketi sockudo)
declare -A PORTS=([nchan]=18101 [pushpin]=18102 [node-ws]=18103 [gorilla]=18104 [tokio-tungstenite]=18105 [fastwebsockets]=18106 [soketi]=18107 [sockudo]=18108)
declare -A SMOKE=([soketi]=smoke_pusher.py [sockudo]=smoke_pusher.py)
PEERS=("${@:-${ALL[@]}}")
LOGS=/tmp/ringcast-peers/logs
mkdir -p "$LOGS"
export CORES=${CORES:-0}

VENV=${VENV:-/tmp/ringcast-peers-venv}
if ! "$VENV/bin/python" -c 'import websockets' 2>/dev/null; then
  echo "[smoke-all] making $VENV with websockets (PyPI)" >&2
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q websockets >&2 || { echo "venv failed" >&2; exit 1; }
fi

listening() { ss -Htln "sport = :$1" | grep -q .; }

declare -A R_INSTALL R_START R_SMOKE R_STOP R_DETAIL
for p in "${PEERS[@]}"; do
  port=${PORTS[$p]:-}
  [ -n "$port" ] && [ -d "$HERE/$p" ] || { echo "unknown peer $p" >&2; exit 2; }
  R_INSTALL[$p]=-; R_START[$p]=-; R_SMOKE[$p]=-; R_STOP[$p]=-; R_DETAIL[$p]=
  echo "=== $p (port $port, cores $CORES)" >&2

  if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    if "$HERE/$p/install.sh" >"$LOGS/$p-install.log" 2>&1; then R_INSTALL[$p]=ok
    else R_INSTALL[$p]=FAIL; R_DETAIL[$p]="install failed, see $LOGS/$p-install.log"; continue; fi
    tail -n 1 "$LOGS/$p-install.log" >&2
  fi

  if listening "$port"; then R_START[$p]=FAIL; R_DETAIL[$p]="port $port already in use"; continue; fi
  PORT=$port setsid "$HERE/$p/start.sh" >"$LOGS/$p-run.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do listening "$port" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if ! listening "$port"; then
    R_START[$p]=FAIL; R_DETAIL[$p]="not listening, see $LOGS/$p-run.log"
    kill -TERM -- -"$pid" 2>/dev/null; wait "$pid" 2>/dev/null; continue
  fi
  R_START[$p]=ok
  sleep 0.5  # let multi-process peers (pushpin: origin, proxy, handler) finish starting

  out=$(timeout 60 "$VENV/bin/python" "$HERE/${SMOKE[$p]:-smoke.py}" "$port" 2>&1 | tail -n 1)
  case $out in PASS*) R_SMOKE[$p]=PASS ;; *) R_SMOKE[$p]=FAIL ;; esac
  R_DETAIL[$p]=${out#* port=$port }
  echo "$out" | cut -c1-300 >&2

  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    R_STOP[$p]="FAIL(hung)"; kill -KILL -- -"$pid" 2>/dev/null
  else
    wait "$pid"; rc=$?
    # 143 = killed by SIGTERM (no handler); both count as a clean stop.
    if listening "$port" || pgrep -g "$pid" >/dev/null 2>&1; then R_STOP[$p]="FAIL(left)"; kill -KILL -- -"$pid" 2>/dev/null
    else R_STOP[$p]="ok(rc=$rc)"; fi
  fi
done

fail=0
printf '\n%-18s %-7s %-5s %-5s %-10s %s\n' PEER INSTALL START SMOKE STOP DETAIL
for p in "${PEERS[@]}"; do
  printf '%-18s %-7s %-5s %-5s %-10s %s\n' "$p" "${R_INSTALL[$p]}" "${R_START[$p]}" "${R_SMOKE[$p]}" "${R_STOP[$p]}" "$(echo "${R_DETAIL[$p]}" | cut -c1-160)"
  [ "${R_SMOKE[$p]}" = PASS ] && [[ ${R_STOP[$p]} == ok* ]] || fail=1
done
exit $fail
