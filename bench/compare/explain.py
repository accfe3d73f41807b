"""Notes that explain a harness PROBLEM line whose cause is known, so a reader of summary.md
does not mistake a measurement artefact for a server fault (or the other way round).

The PROBLEM lines themselves are always kept verbatim; these notes only add the cause. Each
cause was reproduced by hand; bench/README.md ('Side-by-side comparison') lists them with the fix.
"""

from __future__ import annotations

from typing import Any


def notes_for(scenario: str, server: str, probe_status: int | None, problems: list[str],
              throughput: dict[str, Any] | None) -> list[str]:
    """Explanations for the known causes among `problems` of one run."""
    notes = []
    if probe_status is not None and probe_status != 200 and any("publishes failed" in p for p in problems):
        notes.append(
            f"{server} answers publishes with 2xx other than 200 (the readiness probe got {probe_status}); "
            "ringcast-bench counts only 200 as ok, so 'publishes failed' counts these answers too. "
            "Deliveries and loss are still counted at the subscribers")
        failing = next((step for step in (throughput or {}).get("steps", []) if not step.get("sustained")), None)
        if scenario == "throughput" and failing:
            reasons = [part for part in (failing.get("failure") or "").split("; ") if part]
            if reasons and all("publishes failed" in part or "frames of the wrong type" in part for part in reasons):
                notes.append(
                    f"throughput stopped at step {failing['step']} only because of those answers (and frame types): "
                    f"max sustained is NOT measured for {server} until ringcast-bench accepts every 2xx")
    if server == "nchan" and any("frames of the wrong type" in p for p in problems):
        notes.append(
            "nchan picks the frame type from the publish Content-Type, and ringcast-bench publishes text payloads as "
            "'application/octet-stream', so nchan sends binary frames (reproduced: text/plain or no Content-Type "
            "gives text frames). The bytes are delivered unchanged and counted")
    if server == "pushpin" and any("502 instead of 101" in p for p in problems):
        notes.append(
            "Pushpin answers 502 to WebSocket upgrades arriving faster than its proxy -> origin path (WebSocket-over-HTTP "
            "through zurl to the Node origin) accepts them: about 200 upgrades/s on one core here. Its delivery numbers "
            "are for the connections that opened")
    return notes
