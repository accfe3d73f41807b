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
    if server == "pushpin" and any("502 instead of 101" in p for p in problems):
        notes.append(
            "Pushpin answers 502 to WebSocket upgrades arriving faster than its proxy -> origin path (WebSocket-over-HTTP "
            "through zurl to the Node origin) accepts them: about 200 upgrades/s on one core here. Its delivery numbers "
            "are for the connections that opened")
    return notes
