"""The servers compared: how each is started, when it is ready, which pid the harness measures,
and how it is stopped.

Every server, ringcast included, goes through the same path: started fresh for each run in its
own session, pinned with `taskset -c <server cores>` (the peers' start.sh do that themselves,
from `CORES`), ready when its port listens AND a publish is answered 2xx, then stopped with
SIGTERM after the run. The driver, not the harness, starts ringcast too, so every server gets the
same readiness check and the same before-the-ramp memory reading of its whole process tree.

What this module does not do: measure anything during a run (see procfs and compare.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import http.client
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import procfs

#: Every server the driver knows, in the default order (ringcast first: ratios are against it).
SERVER_NAMES = ("ringcast", "nchan", "pushpin", "node-ws", "gorilla", "tokio-tungstenite", "fastwebsockets")
#: Pusher-protocol peers (bench/peers/soketi, bench/peers/sockudo): they serve /app/{key} and the
#: signed /apps/{id}/... API, not /ws + /publish, so they are not in the default list; the
#: harness needs its Pusher mode to measure them. Readiness is a signed trigger (pusher_probe).
PUSHER_SERVER_NAMES = ("soketi", "sockudo")
#: The Pusher workload (`run.sh --workload pusher`): every server on /app/{key} and signed
#: triggers, ringcast first. `ringcast-raw` may be added: the same ringcast (same flags, the
#: same app configured) measured on its native /ws + /publish path, for the Pusher/raw ratio.
PUSHER_WORKLOAD_SERVER_NAMES = ("ringcast", "soketi", "sockudo")
#: ringcast started for the native path beside the Pusher workload.
RINGCAST_RAW = "ringcast-raw"
#: Ports: ringcast next to the peers' defaults (bench/peers/README.md).
PORTS = {
    "ringcast": 18100, "nchan": 18101, "pushpin": 18102, "node-ws": 18103,
    "gorilla": 18104, "tokio-tungstenite": 18105, "fastwebsockets": 18106,
    "soketi": 18107, "sockudo": 18108, RINGCAST_RAW: 18100,
}


@dataclasses.dataclass(frozen=True)
class PusherApp:
    """The one app the Pusher peers serve (bench/peers/common.sh pusher_env, same defaults)."""

    #: App id (numeric: the Python `pusher` SDK accepts nothing else).
    app_id: str = os.environ.get("PUSHER_APP_ID", "1")
    #: Public key (in /app/{key}).
    key: str = os.environ.get("PUSHER_APP_KEY", "app-key")
    #: Secret (signs API requests).
    secret: str = os.environ.get("PUSHER_APP_SECRET", "app-secret")


def pusher_signed_path(app: PusherApp, method: str, path: str, body: bytes, timestamp: int) -> str:
    """`path` with the query Pusher's REST API requires: auth_key, auth_timestamp, auth_version,
    body_md5 (when there is a body) and auth_signature = HMAC-SHA256(secret,
    "METHOD\nPATH\nsorted query") in lowercase hex (Pusher docs, rest-api "Authentication")."""
    query = {"auth_key": app.key, "auth_timestamp": str(timestamp), "auth_version": "1.0"}
    if body:
        query["body_md5"] = hashlib.md5(body).hexdigest()
    signed = "&".join(f"{k}={query[k]}" for k in sorted(query))
    query["auth_signature"] = hmac.new(app.secret.encode(), f"{method}\n{path}\n{signed}".encode(),
                                       hashlib.sha256).hexdigest()
    return path + "?" + "&".join(f"{k}={v}" for k, v in query.items())
#: How long a server may take to listen and answer a publish (Pushpin starts 6 processes).
READY_TIMEOUT_S = 30.0
#: Where each server takes `POST /publish` when not on its WebSocket port: ringcast's API
#: listener (its public port has no publish route).
PUBLISH_PORTS = {"ringcast": 18200, RINGCAST_RAW: 18200}


def publish_port(name: str, pusher: bool = False) -> int:
    """The port publishes go to for server `name`: `POST /publish` on ringcast's API listener,
    or with `pusher` (the Pusher workload) the signed API on the server's own port."""
    if pusher:
        return PORTS[name]
    return PUBLISH_PORTS.get(name, PORTS[name])


def is_ringcast(name: str) -> bool:
    """ringcast, on either path."""
    return name in ("ringcast", RINGCAST_RAW)


def speaks_pusher(name: str, workload: str) -> bool:
    """Whether the harness measures `name` through the Pusher protocol in `workload`."""
    return name in PUSHER_SERVER_NAMES or (workload == "pusher" and name != RINGCAST_RAW)


#: How long a server may take to exit after SIGTERM (ringcast drains up to 10 s by default).
STOP_TIMEOUT_S = 15.0
#: Channel the readiness probe publishes to (no subscriber ever listens on it).
PROBE_CHANNEL = "compare-ready-probe"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where servers and clients run."""

    #: taskset list for the server (every process and thread of it).
    server_cores: str
    #: taskset list for the harness (client threads and publisher) and this driver.
    client_cores: str
    #: "raw" or "pusher": with "pusher", ringcast is started with the one Pusher app
    #: (`--app-id/--app-key/--app-secret`, the peers' `pusher_env` defaults).
    workload: str = "raw"


@dataclasses.dataclass(frozen=True)
class Binaries:
    """What the driver runs."""

    #: The repository (peers live in bench/peers/).
    repo: Path
    #: ringcast release binary.
    ringcast: Path


def start_command(name: str, layout: Layout, binaries: Binaries) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment that start server `name` in the foreground."""
    port = PORTS[name]
    if is_ringcast(name):
        cores = procfs.expand_cpu_list(layout.server_cores)
        app = PusherApp()
        pusher_app = (["--app-id", app.app_id, "--app-key", app.key, "--app-secret", app.secret]
                      if layout.workload == "pusher" else [])
        return [
            "taskset", "-c", layout.server_cores, str(binaries.ringcast),
            "--listen", f"127.0.0.1:{port}", "--api-listen", f"127.0.0.1:{publish_port(name)}",
            "--shards", str(len(cores)), "--cores", ",".join(map(str, cores)), *pusher_app,
        ], {}
    return [str(binaries.repo / "bench" / "peers" / name / "start.sh")], {
        "PORT": str(port), "CORES": layout.server_cores,
    }


def measured_pid(name: str, root: int) -> tuple[int, str]:
    """The pid given to the harness (`--server-pid`) and what it is, in words.

    The harness reads RSS, fds and CPU of one process. For one-process servers that is the
    server. nginx: a worker (the master only supervises; with one core there is one worker).
    Pushpin: condure, which holds the client connections; pushpin-proxy, pushpin-handler, zurl
    and the Node origin are outside that number, so Pushpin's per-process CPU and RSS from the
    harness are partial (the tree PSS of this driver is not)."""
    tree = procfs.process_tree(root)
    if name == "nchan":
        workers = [pid for pid in procfs.children(root) if procfs.command_name(pid) == "nginx"]
        if workers:
            return workers[0], f"nginx worker pid {workers[0]} (1 of {len(workers)}; master {root} not counted)"
        return root, "nginx master (no worker found)"
    if name == "pushpin":
        condure = [pid for pid in tree if procfs.command_name(pid) == "condure"]
        if condure:
            return condure[0], f"condure pid {condure[0]} only (1 of {len(tree)} processes)"
        return root, "start.sh (condure not found)"
    return root, f"pid {root} (the whole server)"


def publish_status(port: int, timeout_s: float = 2.0) -> int | None:
    """HTTP status of one POST /publish/<probe channel>, or None on a connection error."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("POST", f"/publish/{PROBE_CHANNEL}", body=b"probe",
                           headers={"Content-Type": "text/plain"})
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def pusher_probe_status(port: int, app: PusherApp | None = None, timeout_s: float = 2.0) -> int | None:
    """HTTP status of one signed Pusher trigger to the probe channel, or None on a connection
    error. Note: soketi 1.6.1 answers API errors with status 200 and the real code in the JSON
    body, so the body must say {"ok": true} (soketi) or be a JSON object without "error"."""
    app = app or PusherApp()
    body = json.dumps({"name": "probe", "channel": PROBE_CHANNEL, "data": "probe"}).encode()
    path = pusher_signed_path(app, "POST", f"/apps/{app.app_id}/events", body, int(time.time()))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read()
        try:
            answer = json.loads(text or b"{}")
        except ValueError:
            answer = None
        if response.status == 200 and (not isinstance(answer, dict) or "error" in answer):
            return 500
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


class ServerError(Exception):
    """A server did not start, or did not get ready in time."""


class RunningServer:
    """One server started for one run."""

    def __init__(self, name: str, layout: Layout, binaries: Binaries, log_path: Path):
        """Starts the server in its own session, output to `log_path`."""
        self.name = name
        self.port = PORTS[name]
        if self.port in procfs.listening_ports():
            raise ServerError(f"port {self.port} is already in use before starting {name}")
        argv, extra_env = start_command(name, layout, binaries)
        #: Readiness is a signed trigger (Pusher peers, and ringcast in the Pusher workload).
        self.pusher_probe = speaks_pusher(name, layout.workload)
        self.log_path = log_path
        self._log = open(log_path, "wb")
        try:
            self.process = subprocess.Popen(
                argv, env={**os.environ, **extra_env}, stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as error:
            self._log.close()
            raise ServerError(f"cannot start {name} ({argv[0]}): {error}") from error
        #: Every process of the tree seen so far, with its start time (pid reuse guard).
        self.known: dict[int, int | None] = {}
        #: Status of the readiness publish (200, 201, 202 ...).
        self.probe_status: int | None = None

    @property
    def root_pid(self) -> int:
        """The pid the driver started (start.sh's, or the server's when start.sh execs)."""
        return self.process.pid

    def remember_tree(self) -> list[int]:
        """Records the current process tree (so stop() can find processes that outlive it)."""
        tree = procfs.process_tree(self.root_pid)
        for pid in tree:
            self.known.setdefault(pid, procfs.start_ticks(pid))
        return tree

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Waits until the port listens and a publish (a signed trigger for the Pusher peers) gets a
        2xx, bounded by `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        # Bounded by the deadline.
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.process.returncode} while starting; see {self.log_path}")
            if self.port in procfs.listening_ports():
                status = (pusher_probe_status(self.port) if self.pusher_probe
                          else publish_status(publish_port(self.name)))
                if status is not None and 200 <= status < 300:
                    self.probe_status = status
                    # Multi-process servers (Pushpin) may still be wiring up; let them finish.
                    time.sleep(0.5)
                    self.remember_tree()
                    return
            time.sleep(0.1)
        raise ServerError(f"{self.name} not ready within {timeout_s:.0f} s (port {self.port} listening and a "
                          f"publish answered 2xx); see {self.log_path}")

    def stop(self) -> tuple[str, list[str]]:
        """SIGTERM, wait, SIGKILL what remains; returns (how it ended, problems)."""
        problems: list[str] = []
        self.remember_tree()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                problems.append(f"{self.name} did not exit within {STOP_TIMEOUT_S:.0f} s of SIGTERM; killed")
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        code = self.process.returncode
        ended = "exit 0" if code == 0 else ("terminated by SIGTERM" if code == -signal.SIGTERM else f"exit {code}")
        if code not in (0, -signal.SIGTERM):
            problems.append(f"{self.name} ended with {ended} after SIGTERM (see {self.log_path.name})")
        problems.extend(self._kill_leftovers())
        self._log.close()
        return ended, problems

    def _kill_leftovers(self) -> list[str]:
        """Kills, by pid, processes of this server's tree still alive after it stopped (Pushpin's
        components run in their own process groups, so a group signal would miss them)."""
        deadline = time.monotonic() + 5.0
        leftovers = []
        # Bounded by the deadline: components may take a moment to follow their parent.
        while time.monotonic() < deadline:
            leftovers = [pid for pid, ticks in self.known.items()
                         if procfs.alive(pid) and procfs.start_ticks(pid) == ticks]
            if not leftovers:
                break
            time.sleep(0.1)
        if not leftovers:
            return []
        names = [f"{procfs.command_name(pid)}({pid})" for pid in leftovers]
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return [f"{self.name} left processes running 5 s after stopping, killed: {', '.join(names)}"]
