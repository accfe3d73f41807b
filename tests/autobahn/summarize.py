#!/usr/bin/env python3
"""Summarize an Autobahn-format report directory (index.json + per-case JSON),
as written by both `wstest -m fuzzingclient` and `kosoku`, and apply the gate.

Gate (exit 1) when, for any case in the report:
  * behavior is not OK / NON-STRICT / INFORMATIONAL (i.e. FAILED, UNIMPLEMENTED,
    kosoku's ERROR, NO_CLOSE, anything unknown), or
  * behaviorClose is FAILED or UNCLEAN (red cells in Autobahn's report);
    with --strict-close also WRONG CODE and FAILED BY CLIENT (shown as
    non-strict/"almost" in Autobahn's report, so only warnings by default), or
  * a case listed in --expect is missing from the report (crash, timeout).
Stdlib only; runs on any Python 3.
"""

import argparse
import json
import os
import sys
from collections import Counter, defaultdict

STATES = ["OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED"]
ALLOWED = {"OK", "NON-STRICT", "INFORMATIONAL"}
CLOSE_FAIL = {"FAILED", "UNCLEAN"}
CLOSE_WARN = {"WRONG CODE", "FAILED BY CLIENT"}


def key(case_id):
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--tool", default="autobahn")
    ap.add_argument("--expect", help="file with the expected case ids, one a line")
    ap.add_argument("--strict-close", action="store_true")
    ap.add_argument("--markdown", help="write a markdown summary here")
    ap.add_argument("--title", default="Autobahn fuzzingclient summary")
    args = ap.parse_args()

    index_path = os.path.join(args.outdir, "index.json")
    if not os.path.exists(index_path):
        print(f"GATE FAILED: no {index_path} (the run did not produce a report)")
        return 1
    with open(index_path) as f:
        index = json.load(f)
    if not index:
        print(f"GATE FAILED: {index_path} is empty")
        return 1

    close_fail = CLOSE_FAIL | (CLOSE_WARN if args.strict_close else set())
    expected = None
    if args.expect:
        with open(args.expect) as f:
            expected = [l.strip() for l in f if l.strip()]

    out = []
    failed_total = 0
    for agent in sorted(index):
        cases = index[agent]
        ids = sorted(cases, key=key)
        per_group = defaultdict(Counter)
        close_counts = Counter()
        total = Counter()
        bad, warn = [], []
        for cid in ids:
            c = cases[cid]
            beh, cbeh = c.get("behavior", "?"), c.get("behaviorClose", "?")
            state = beh
            per_group[cid.split(".")[0]][state] += 1
            total[state] += 1
            close_counts[cbeh] += 1
            fail = beh not in ALLOWED or cbeh in close_fail
            if beh != "OK" or cbeh not in ("OK", "INFORMATIONAL"):
                detail = ""
                rf = c.get("reportfile")
                if rf and os.path.exists(os.path.join(args.outdir, rf)):
                    try:
                        with open(os.path.join(args.outdir, rf)) as f:
                            d = json.load(f)
                        detail = d.get("result", "")
                        if cbeh not in ("OK", "INFORMATIONAL"):
                            detail += " / close: " + d.get("resultClose", "")
                    except (OSError, ValueError):
                        pass
                row = (cid, beh, cbeh, c.get("remoteCloseCode"), detail, fail)
                (bad if fail else warn).append(row)
        missing = [i for i in expected if i not in cases] if expected is not None else []
        failed_total += len(bad) + len(missing)

        cols = STATES + sorted(s for s in total if s not in STATES)
        out.append(f"## {args.title}: agent `{agent}` ({args.tool})\n")
        out.append(f"{len(ids)} cases in report"
                   + (f", {len(expected)} expected, {len(missing)} missing" if expected is not None else "")
                   + f". Gate: **{'FAIL' if bad or missing else 'PASS'}**"
                   + f" ({len(bad) + len(missing)} failing, {len(warn)} allowed non-OK)\n")
        out.append("### Case state (behavior) per group\n")
        out.append("| group | " + " | ".join(cols) + " | total |")
        out.append("|---" * (len(cols) + 2) + "|")
        for g in sorted(per_group, key=int if all(x.isdigit() for x in per_group) else str):
            cnt = per_group[g]
            out.append(f"| {g}.* | " + " | ".join(str(cnt[s]) for s in cols)
                       + f" | {sum(cnt.values())} |")
        out.append("| **all** | " + " | ".join(f"**{total[s]}**" for s in cols)
                   + f" | **{sum(total.values())}** |\n")
        out.append("### Closing behavior (behaviorClose)\n")
        out.append("| behaviorClose | count |")
        out.append("|---|---|")
        for s, n in sorted(close_counts.items()):
            out.append(f"| {s} | {n} |")
        out.append("")
        out.append("### Non-OK cases\n")
        if not (bad or warn or missing):
            out.append("None: every case is OK.\n")
        else:
            out.append("| case | state | close | remote close code | gate | result |")
            out.append("|---|---|---|---|---|---|")
            for cid, beh, cbeh, code, detail, fail in sorted(bad + warn, key=lambda r: key(r[0])):
                detail = detail.replace("|", "\\|").replace("\n", " ")
                out.append(f"| {cid} | {beh} | {cbeh} | {code} | {'**FAIL**' if fail else 'allowed'} | {detail} |")
            for cid in missing:
                out.append(f"| {cid} | MISSING | - | - | **FAIL** | not in the report |")
            out.append("")

    text = "\n".join(out)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 1 if failed_total else 0


if __name__ == "__main__":
    sys.exit(main())
