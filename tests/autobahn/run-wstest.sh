#!/usr/bin/env bash
# Reference run: Autobahn|Testsuite `wstest -m fuzzingclient` (Python 2.7)
# against ws://HOST:PORT/echo, cases 1-10 (12.*, 13.* excluded) or --cases,
# using fuzzingclient.json with the server URL and OUTDIR filled in.
#
# usage: run-wstest.sh HOST:PORT OUTDIR [--agent NAME] [--strict-close]
#                      [--cases '12.*,13.*']
# Writes OUTDIR/index.html (+ per-case html/json, index.json), OUTDIR/spec.json,
# OUTDIR/wstest.log and OUTDIR/summary.md (counts per state and case group,
# list of non-OK cases). Exit 1 when the same rule as run-kosoku.sh fails
# (FAILED/UNIMPLEMENTED case, FAILED/UNCLEAN close, or a missing case), 2 on
# usage/setup errors.
set -euo pipefail
. "$(dirname "$0")/common.sh"

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
parse_hostport "$1"
OUTDIR="$2"; shift 2
AGENT="ringcast"
STRICT=()
CASES=""
while [ $# -gt 0 ]; do
    case "$1" in
        --agent) AGENT="$2"; shift 2 ;;
        --strict-close) STRICT=(--strict-close); shift ;;
        --cases) CASES="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done

WSTEST="$("$AUTOBAHN_DIR/setup-wstest.sh")" || exit 2
URL="ws://$HOST:$PORT/echo"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
rm -f "$OUTDIR"/expected-cases.txt "$OUTDIR"/index.json "$OUTDIR"/index.html "$OUTDIR"/*_case_*.html "$OUTDIR"/*_case_*.json

python3 - "$AUTOBAHN_DIR/fuzzingclient.json" "$OUTDIR/spec.json" "$URL" "$OUTDIR" "$AGENT" "$CASES" <<'PYEOF'
import fnmatch, json, sys
src, dst, url, outdir, agent, cases = sys.argv[1:]
spec = json.load(open(src))
spec["outdir"] = outdir
spec["servers"] = [{"agent": agent, "url": url}]
if cases:
    spec["cases"] = [case.strip() for case in cases.split(",") if case.strip()]
    # An exclusion that covers a requested case goes (wstest applies exclusions after the
    # selection: `--cases 12.5.10` under the default "12.*" exclusion would run nothing).
    spec["exclude-cases"] = [
        excluded for excluded in spec["exclude-cases"]
        if not any(fnmatch.fnmatchcase(case, excluded) or fnmatch.fnmatchcase(excluded, case)
                   for case in spec["cases"])
    ]
json.dump(spec, open(dst, "w"), indent=3)
PYEOF

log "wstest -m fuzzingclient -s $OUTDIR/spec.json ($URL -> $OUTDIR)"
start=$(date +%s)
set +e
(cd "$OUTDIR" && timeout -k 10 "${WSTEST_TIMEOUT:-1800}" "$WSTEST" -m fuzzingclient -s "$OUTDIR/spec.json") > "$OUTDIR/wstest.log" 2>&1
rc=$?
set -e
end=$(date +%s)
[ "$rc" -ne 124 ] || log "TIMEOUT: killed after ${WSTEST_TIMEOUT:-1800}s (WSTEST_TIMEOUT to change)"
log "wstest exited $rc after $((end - start))s (log: $OUTDIR/wstest.log, report: $OUTDIR/index.html)"

# The case ids wstest announced ("Cases = [...]"), so missing ones count as failures.
python3 - "$OUTDIR/wstest.log" "$OUTDIR/expected-cases.txt" <<'PYEOF' || true
import ast, sys
for line in open(sys.argv[1]):
    if line.startswith("Cases = ["):
        open(sys.argv[2], "w").write("\n".join(ast.literal_eval(line.split("=", 1)[1].strip())) + "\n")
        break
PYEOF
EXPECT=()
[ -s "$OUTDIR/expected-cases.txt" ] && EXPECT=(--expect "$OUTDIR/expected-cases.txt")

set +e
python3 "$AUTOBAHN_DIR/summarize.py" "$OUTDIR" "${EXPECT[@]}" --tool "wstest $("$WSTEST" --autobahnversion 2>/dev/null | tr '\n' ' ' | sed 's/ $//'), $((end - start))s" \
    --markdown "$OUTDIR/summary.md" "${STRICT[@]}" --title "Autobahn|Testsuite fuzzingclient (cases ${CASES:-1-10})"
gate=$?
set -e
log "summary: $OUTDIR/summary.md"
[ "$rc" -eq 0 ] || { log "wstest itself failed (exit $rc)"; exit 1; }
[ "$gate" -eq 0 ] || { log "RESULT: FAIL"; exit 1; }
log "RESULT: PASS"
