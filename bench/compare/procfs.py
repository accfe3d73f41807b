"""Readings from /proc: process trees, their memory and CPU, and listening TCP ports.

The comparison measures servers that are one process (ringcast, node-ws, gorilla, the Rust
peers), a master with workers (nginx/Nchan) or six cooperating processes (Pushpin). The harness
reads one pid; this module sums over the whole process tree so every server is charged for
everything it runs. Memory is PSS (proportional set size, /proc/<pid>/smaps_rollup): a page
shared by nginx's master and worker, or a shared library, is split between them instead of
being counted once per process as VmRSS would.

Nothing here signals or changes a process; it only reads.
"""

from __future__ import annotations

import dataclasses
import os
import time

#: Clock ticks per second of /proc/<pid>/stat CPU times.
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: Deepest process tree walked (Pushpin is 3 levels deep); a bound, not a expectation.
TREE_DEPTH_MAX = 8
#: Most processes in one tree; more means something forks without bound.
TREE_PROCESSES_MAX = 256


def _read(path: str) -> str | None:
    """The text of a /proc file, or None when the process is gone or unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:
        return None


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is index 0)."""
    text = _read(f"/proc/{pid}/stat")
    if text is None or ")" not in text:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return text[text.rfind(")") + 1:].split()


def start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot: with the pid, its identity."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def command_name(pid: int) -> str:
    """`comm` of a process ('' when it is gone)."""
    return (_read(f"/proc/{pid}/comm") or "").strip()


def children(pid: int) -> list[int]:
    """Direct children of `pid` (every thread's children file; Linux 3.5+)."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for thread in threads:
        text = _read(f"/proc/{pid}/task/{thread}/children") or ""
        found.extend(int(child) for child in text.split())
    return sorted(set(found))


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, breadth first, bounded by depth and count."""
    tree, level = [root], [root]
    for _ in range(TREE_DEPTH_MAX):
        level = [child for parent in level for child in children(parent)]
        if not level:
            break
        tree.extend(level)
        if len(tree) >= TREE_PROCESSES_MAX:
            return tree[:TREE_PROCESSES_MAX]
    return tree


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


@dataclasses.dataclass
class ProcessReading:
    """One process at one moment."""

    #: Process id.
    pid: int
    #: `comm`.
    name: str
    #: Proportional set size: private pages plus its share of shared ones.
    pss_bytes: int
    #: Resident set size (shared pages counted in full).
    rss_bytes: int
    #: utime + stime of all its threads.
    cpu_seconds: float


def read_process(pid: int) -> ProcessReading | None:
    """PSS, RSS and CPU of one process; None if it is gone."""
    fields = stat_fields(pid)
    if fields is None or len(fields) < 13:
        return None
    cpu_seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S
    memory = {}
    rollup = _read(f"/proc/{pid}/smaps_rollup")
    for line in (rollup or "").splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss") and value.strip().endswith("kB"):
            memory[key] = int(value.split()[0]) * 1024
    if "Rss" not in memory:
        # No smaps_rollup (kernel < 4.14): fall back to VmRSS, for both.
        for line in (_read(f"/proc/{pid}/status") or "").splitlines():
            if line.startswith("VmRSS:"):
                memory["Rss"] = int(line.split()[1]) * 1024
        memory.setdefault("Pss", memory.get("Rss", 0))
    return ProcessReading(pid, command_name(pid), memory.get("Pss", 0), memory.get("Rss", 0), cpu_seconds)


@dataclasses.dataclass
class TreeReading:
    """A whole server (its process tree) at one moment."""

    #: time.monotonic() of the reading.
    monotonic_s: float
    #: Sum of PSS over the tree.
    pss_bytes: int
    #: Sum of RSS over the tree (double counts shared pages; for reference).
    rss_bytes: int
    #: Sum of CPU seconds over the tree.
    cpu_seconds: float
    #: The processes read.
    processes: list[ProcessReading]


def read_tree(root: int, with_memory: bool = True) -> TreeReading:
    """Sums one reading of every process in `root`'s tree (without PSS when `with_memory` is
    False, which avoids walking the server's page tables during latency measurements)."""
    now = time.monotonic()
    readings = []
    for pid in process_tree(root):
        if with_memory:
            reading = read_process(pid)
        else:
            fields = stat_fields(pid)
            reading = None if fields is None or len(fields) < 13 else ProcessReading(
                pid, command_name(pid), 0, 0, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S)
        if reading is not None:
            readings.append(reading)
    return TreeReading(
        monotonic_s=now,
        pss_bytes=sum(reading.pss_bytes for reading in readings),
        rss_bytes=sum(reading.rss_bytes for reading in readings),
        cpu_seconds=sum(reading.cpu_seconds for reading in readings),
        processes=readings,
    )


def parse_listening_ports(text: str) -> set[int]:
    """Local ports in LISTEN state (st 0A) from the text of /proc/net/tcp or tcp6."""
    ports = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def listening_ports() -> set[int]:
    """Every TCP port something listens on in this network namespace."""
    ports: set[int] = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        ports |= parse_listening_ports(_read(path) or "")
    return ports


def expand_cpu_list(text: str) -> list[int]:
    """'0', '0-1', '0,2-3' -> [0], [0, 1], [0, 2, 3] (taskset's syntax)."""
    cpus: list[int] = []
    for part in filter(None, (part.strip() for part in text.split(","))):
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if low > high or high > 4095:
            raise ValueError(f"bad CPU range {part!r}")
        cpus.extend(range(low, high + 1))
    if not cpus:
        raise ValueError("empty CPU list")
    return sorted(set(cpus))
