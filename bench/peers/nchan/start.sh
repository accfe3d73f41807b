#!/usr/bin/env bash
# Start Nchan (nginx) in the foreground on 127.0.0.1:$PORT (default 18101),
# pinned to $CORES (default 0), one worker process per core. SIGTERM = fast shutdown.
set -euo pipefail
PEER=nchan; HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../common.sh"
peer_env 18101
RUN=${RUN_DIR:-/tmp/ringcast-peers/nchan-$PORT}
rm -rf "$RUN"; mkdir -p "$RUN"
sed -e "s|@RUN@|$RUN|g" -e "s|@PORT@|$PORT|g" -e "s|@WORKERS@|$NCORES|g" \
  "$HERE/nginx.conf.in" >"$RUN/nginx.conf"
ulimit -n 20000 2>/dev/null || true
say "nginx+nchan on 127.0.0.1:$PORT, cores $CORES, $NCORES workers, run dir $RUN"
# -e stderr: never touch /var/log/nginx; nginx exits fast on SIGTERM (SIGQUIT = graceful).
exec taskset -c "$CORES" /usr/sbin/nginx -e stderr -p "$RUN" -c "$RUN/nginx.conf"
