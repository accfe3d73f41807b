#!/usr/bin/env bash
# Nchan peer: Debian nginx-light + libnginx-mod-nchan. Idempotent.
set -euo pipefail
PEER=nchan; . "$(dirname "$0")/../common.sh"
apt_ensure nginx-light libnginx-mod-nchan
# The packaged service is never used (start.sh runs its own nginx in the foreground).
[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || die "ngx_nchan_module.so missing"
say "nginx $(deb_version nginx) (nginx-light $(deb_version nginx-light)), nchan $(deb_version libnginx-mod-nchan): ready"
