#!/usr/bin/env bash
# ringcast vs its peers, side by side, in one command: builds, installs, runs, summarizes.
#   bench/compare/run.sh                      # full run: 7 servers x 3 scenarios x 3 repetitions
#   bench/compare/run.sh --quick --repeat 1   # smoke test of the driver (a few minutes)
#   bench/compare/run.sh --help               # every option
# Results: results/compare/<--name, default latest>/summary.md (see bench/README.md).
# The work is done by compare.py (Python 3.9+, standard library only).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
command -v python3 >/dev/null || { echo "run.sh: python3 is required" >&2; exit 1; }
command -v taskset >/dev/null || { echo "run.sh: taskset (util-linux) is required" >&2; exit 1; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' || { echo "run.sh: Python 3.9+ is required" >&2; exit 1; }
exec python3 "$HERE/compare.py" "$@"
