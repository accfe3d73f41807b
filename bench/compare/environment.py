"""env.txt of a comparison: the machine, the versions and the exact command.

Numbers without their machine mean nothing. This records the kernel, CPU model, cores, memory,
load average (a busy machine is named, not hidden), the sysctls that cap connection counts, the
git commit of the repository (ringcast, harness and peer scripts all live in it), the versions of
every peer's software, and the command line.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

#: Sysctls that shape connection-heavy runs (the same list as the harness's env.txt).
SYSCTLS = ("fs/file-max", "fs/nr_open", "net/core/somaxconn", "net/ipv4/tcp_max_syn_backlog",
           "net/ipv4/ip_local_port_range", "net/ipv4/tcp_mem", "net/ipv4/tcp_rmem",
           "net/ipv4/tcp_wmem", "net/ipv4/tcp_tw_reuse", "net/ipv4/tcp_congestion_control")


def _first_line(argv: list[str], cwd: Path | None = None) -> str:
    """First output line of a command, or 'n/a'."""
    try:
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text and result.returncode == 0 else "n/a"


def _read(path: str) -> str:
    """A /proc or /sys file on one line, or 'n/a'."""
    try:
        with open(path, encoding="utf-8") as file:
            return " ".join(file.read().split())
    except OSError:
        return "n/a"


def load_average() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(_read("/proc/loadavg").split()[:3])


def cpu_model() -> str:
    """The first 'model name' of /proc/cpuinfo."""
    for line in _read_lines("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "n/a"


def _read_lines(path: str) -> list[str]:
    """Lines of a file, or none."""
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().splitlines()
    except OSError:
        return []


def memory_total() -> str:
    """MemTotal of /proc/meminfo."""
    for line in _read_lines("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return line.split(":", 1)[1].strip()
    return "n/a"


def peer_versions(repo: Path) -> list[str]:
    """One line per peer's software version (what install.sh installed)."""
    def deb(package: str) -> str:
        return _first_line(["dpkg-query", "-W", "-f=${Version}", package])

    peers = repo / "bench" / "peers"
    return [
        f"nchan: nginx-light {deb('nginx-light')}, libnginx-mod-nchan {deb('libnginx-mod-nchan')}",
        f"pushpin: pushpin {deb('pushpin')}, condure {deb('condure')}, zurl {deb('zurl')}, node {_first_line(['node', '-v'])}",
        "node-ws: node {}, ws {}".format(
            _first_line(["node", "-v"]),
            _first_line(["node", "-p", "require('./node_modules/ws/package.json').version"], cwd=peers / "node-ws")),
        f"gorilla: {_first_line(['go', 'version'])}, gorilla/websocket {deb('golang-github-gorilla-websocket-dev')}",
        f"tokio-tungstenite / fastwebsockets: {_first_line(['rustc', '-V'])} (crate versions in their Cargo.lock)",
        "soketi: @soketi/soketi {} on node {} (bench/peers/soketi/node_modules)".format(
            _first_line([str(peers / "soketi" / "node_modules" / ".bin" / "node"), "-p",
                         "require('@soketi/soketi/package.json').version"], cwd=peers / "soketi"),
            _first_line([str(peers / "soketi" / "node_modules" / ".bin" / "node"), "-v"])),
        "sockudo: {} (bench/peers/sockudo/root/VERSION)".format(
            _first_line(["cat", str(peers / "sockudo" / "root" / "VERSION")])),
    ]


def environment_text(repo: Path, binaries: dict[str, Path], layout: str, argv: list[str]) -> str:
    """The text of env.txt."""
    commit = _first_line(["git", "-C", str(repo), "rev-parse", "HEAD"])
    # Changes under results/ do not count: a run rewrites the published results it is part of.
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no",
                             "--", ":(top)", ":(top,exclude)results"],
                            capture_output=True, text=True, check=False)
    dirty = status.returncode == 0 and bool(status.stdout.strip())
    lines = [
        f"kernel: {platform.release()} ({_read('/proc/version')})",
        f"cpu_model: {cpu_model()}",
        f"cpus_online: {os.cpu_count()}",
        f"memory_total: {memory_total()}",
        f"load_average_at_start: {load_average()}",
        f"core_layout: {layout}",
        f"git_commit: {commit}{' (dirty: tracked files modified)' if dirty else ''} ({repo})",
        f"git_branch: {_first_line(['git', '-C', str(repo), 'rev-parse', '--abbrev-ref', 'HEAD'])}",
    ]
    lines += [f"binary {name}: {path}" for name, path in binaries.items()]
    lines += [f"peer {line}" for line in peer_versions(repo)]
    lines += [f"python: {sys.version.split()[0]}"]
    lines += [f"sysctl {name.replace('/', '.')}: {_read('/proc/sys/' + name)}" for name in SYSCTLS]
    lines.append(f"command: {shlex.join(argv)}")
    return "\n".join(lines) + "\n"
