#!/usr/bin/env python3
"""Runs the official Centrifugo client SDKs (centrifuge-js 5 in Node, centrifuge-python) against
ringcast's Centrifugo protocol and channel history (issue 17), and prints one JSON line per
check, then the plain summary line "N passed, N failed".

  python3 tests/clients/centrifugo_suite.py [--bin target/release/ringcast] [--only node,python,api,restart,twonodes]

The script starts `ringcast --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --shards 2
--history 'chat:*@50,feed:*' --token-secret S --api-key K` itself (the addresses come from its
"listening on A (api on B" log line) and, with each SDK (`node centrifuge-client.js`,
`.venv/bin/python centrifuge_client.py`):
- connects with a JWT, subscribes `chat:...`, gets 3 publications made with /api/publish, in
  order, with offsets 1..3; the SDK's `history` works, its `publish` is refused (103);
- drops the TCP connection (no close frame), publishes 100 while the SDK reports it is not
  connected, and lets it reconnect: exactly those 100, in order, no duplicates, with
  `was_recovering` and `recovered` true (on `feed:`, which keeps 100: the whole gap, exactly);
- the same with 80 missed on a channel that keeps 50: `was_recovering` true, `recovered` false;
- a forged token and no token are refused (disconnect 3500, and the SDK stops reconnecting).
Then /api/history (positions, `since`, 112 for another epoch, 108 without history, 401
without the key), and a restart of the server on the same ports (memory history: a new
epoch) with both SDKs subscribed: after they reconnect, `recovered` is false. Last, `twonodes`:
a real redis-server and two nodes with `--redis` (history in Redis Streams); each SDK connects
through a loopback TCP proxy to node A, the proxy then cuts it and points at node B, 100 are
published on both nodes meanwhile, and the SDK recovers exactly those 100 on node B.

Channel names carry a per-run suffix. Each check line:
{"type":"check","scenario":..,"name":..,"ok":true|false,"detail":..}. Exit code 0 when every
check passed, 1 otherwise; every process this script starts is stopped before it exits (a
hard deadline, --deadline-s, stops the whole run). Standard library only, plus the client
scripts and what tests/clients/install.sh installs (node_modules, .venv).
"""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from validate import HERE, PYTHON, REPO, WAIT_S, Checks, Proc

#: `--token-secret` (ringcast wants at least 32 characters).
SECRET = "centrifugo-suite-secret-0123456789abcdef"
#: A secret that is not the server's: tokens signed with it are forged.
FORGED_SECRET = "not-the-servers-secret-0123456789abcdef"
#: `--api-key` (at least 16 characters).
API_KEY = "centrifugo-suite-api-key-0123"
#: Which channels keep history, and how many publications each: `chat:*` 50 (the 80-missed case),
#: `feed:*` the default `--history-size` of 100 (the 100-missed case: all 100 are still kept).
HISTORY = "chat:*@50,feed:*"
#: How long an SDK may take to notice a lost connection, reconnect and resubscribe, in seconds
#: (centrifuge-js waits 0.5-1 s before its first reconnect, centrifuge-python 0.1-0.2 s; after a
#: server restart their backoff grows while the server is down).
RECONNECT_S = 30.0
SCENARIOS = ("node", "python", "api", "restart", "twonodes")
#: A suffix that keeps this run's channels apart from any other run's.
RUN = f"{os.getpid()}-{int(time.time()) % 100000}"


class Ringcast:
    """The server under test, in its own session, its output appended to a log file."""

    def __init__(self, binary, log_path, extra=()):
        self.binary, self.log_path, self.extra = binary, log_path, list(extra)
        self.p = None
        self.address = self.api_address = None

    def start(self, listen="127.0.0.1:0", api_listen="127.0.0.1:0", timeout=15.0):
        """Starts it and waits for "listening on A (api on B"; retries while the port is busy."""
        deadline = time.monotonic() + timeout
        # Bounded: by the deadline (a restart on the same port may meet a socket not yet freed).
        while True:
            offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            log = open(self.log_path, "a")
            self.p = subprocess.Popen(
                [self.binary, "--listen", listen, "--api-listen", api_listen, "--shards", "2",
                 "--history", HISTORY, "--token-secret", SECRET, "--api-key", API_KEY, "--log", "info",
                 *self.extra],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            log.close()
            found = self._wait_listening(offset, deadline)
            if found:
                self.address, self.api_address = found
                return
            if self.p.poll() is None or time.monotonic() >= deadline:
                self.stop()
                raise SystemExit(f"ringcast did not start; see {self.log_path}")
            time.sleep(0.3)

    def _wait_listening(self, offset, deadline):
        # Bounded: by the deadline, or the process exiting.
        while time.monotonic() < deadline:
            with open(self.log_path, errors="replace") as log:
                log.seek(offset)
                match = re.search(r"listening on (\S+) \(api on ([^;)\s]+)", log.read())
            if match:
                return match.group(1), match.group(2)
            if self.p.poll() is not None:
                return None
            time.sleep(0.05)
        return None

    def restart(self):
        """SIGTERM, then the same command on the same addresses."""
        address, api_address = self.address, self.api_address
        self.stop()
        self.start(address, api_address)

    def stop(self):
        if self.p is None or self.p.poll() is not None:
            return
        os.killpg(self.p.pid, signal.SIGTERM)
        try:
            self.p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait(5)


def free_port():
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A real redis-server on a free loopback port, no persistence."""

    def __init__(self):
        self.port = free_port()
        self.p = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 10
        # Bounded: by the deadline.
        while time.monotonic() < deadline:
            try:
                import socket
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit("redis-server did not start (tests/run.sh installs it)")

    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)


class SwitchProxy:
    """A TCP proxy on loopback that forwards to one node; `switch` points it at another and
    cuts every connection through it (the client's network drops; it reconnects through the
    proxy and lands on the other node)."""

    def __init__(self, target):
        import socket
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.pairs = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        # Bounded: ends when the listener is closed.
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            host, port = self.target.rsplit(":", 1)
            try:
                upstream = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        # Bounded: ends when either side closes.
        while True:
            try:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            try:
                sock.close()
            except OSError:
                pass

    def switch(self, target):
        import socket
        self.target = target
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass

    def close(self):
        self.switch(self.target)
        self.listener.close()


class Api:
    """The server API (`/api/...` on the API listener), over one keep-alive connection."""

    def __init__(self, server):
        self.server = server
        self.conn = None

    def post(self, path, body, key=API_KEY, raw=None):
        """POSTs JSON (or `raw` bytes); returns (status, parsed body or the text)."""
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["X-API-Key"] = key
        payload = raw if raw is not None else json.dumps(body).encode()
        # Bounded: one retry on a fresh connection (the server may have closed an idle one).
        for attempt in range(2):
            if self.conn is None:
                host, port = self.server.api_address.rsplit(":", 1)
                self.conn = http.client.HTTPConnection(host, int(port), timeout=WAIT_S)
            try:
                self.conn.request("POST", path, payload, headers)
                response = self.conn.getresponse()
                text = response.read().decode(errors="replace")
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                break
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 1:
                    raise
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text

    def publish(self, channel, data):
        """`/api/publish`; returns `result` (None when refused)."""
        status, body = self.post("/api/publish", {"channel": channel, "data": data})
        return body.get("result") if status == 200 and isinstance(body, dict) else None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Suite:
    """The scenarios; each uses fresh client processes and channel names."""

    def __init__(self, args, checks, server):
        self.args, self.c, self.server = args, checks, server
        self.http = Api(server)
        self.procs = []

    def client(self, sdk, *argv, address=None):
        """Starts one SDK's client script against the server (or `address`)."""
        url = f"ws://{address or self.server.address}/connection/websocket"
        if sdk == "node":
            command = ["node", "centrifuge-client.js", "--url", url, "--timeout-ms", "180000", *argv]
        else:
            command = [PYTHON, "centrifuge_client.py", "--url", url, "--timeout-s", "180", *argv]
        proc = Proc(command, sdk)
        self.procs.append(proc)
        return proc

    def close_all(self):
        # Bounded: by the processes started.
        for proc in self.procs:
            proc.close()
        self.procs = []

    def publications(self, proc, channel, count, start=0, timeout=WAIT_S):
        """Waits for `count` publications on `channel` (from line `start`); returns them all."""
        proc.wait(lambda _: len(proc.seen("publication", start, channel=channel)) >= count, timeout, start)
        time.sleep(0.3)  # anything more (a duplicate) would arrive now
        return proc.seen("publication", start, channel=channel)

    def publish_many(self, channel, first, count):
        """Publishes {"n": first..first+count-1}; returns the offsets answered and the time taken."""
        started = time.monotonic()
        offsets = []
        # Bounded: `count` publishes.
        for n in range(first, first + count):
            result = self.http.publish(channel, {"n": n})
            offsets.append(result.get("offset") if result else None)
        return offsets, int((time.monotonic() - started) * 1000)

    def subscribed_with_position(self, sdk, channel):
        """A client subscribed to `channel` that has received offset 1: the SDK holds a position."""
        c = self.c
        proc = self.client(sdk, "--token-secret", SECRET, "--subscribe", channel)
        sub = proc.wait_type("subscribed", channel=channel)
        first = self.http.publish(channel, {"n": 1})
        got = proc.wait_type("publication", channel=channel)
        c.check(f"subscribed to {channel} and received offset 1",
                sub and first and first.get("offset") == 1 and got and got.get("offset") == 1,
                {"subscribed": sub, "publish": first, "publication": got})
        return proc

    def drop_and_wait_gone(self, proc):
        """Drops the TCP connection; returns the mark before it, once the SDK reports it lost."""
        mark = proc.mark()
        proc.send(op="drop")
        gone = proc.wait(lambda l: l.get("type") in ("disconnected", "connecting"), WAIT_S, mark)
        self.c.check("after the drop the SDK reports disconnected/connecting", gone, gone)
        return mark

    # --- scenarios -------------------------------------------------------------------------

    def sdk(self, sdk):
        """Everything one SDK does: live, recovered, not recovered, refused tokens."""
        self.live(sdk)
        self.recover(sdk)
        self.beyond_history(sdk)
        self.refused_tokens(sdk)

    def node(self):
        self.sdk("node")

    def python(self):
        self.sdk("python")

    def live(self, sdk):
        c = self.c
        channel = f"chat:live-{RUN}-{sdk}"
        proc = self.client(sdk, "--token-secret", SECRET, "--subscribe", channel)
        connected = proc.wait_type("connected")
        c.check("connects with a JWT", connected and connected.get("client"), connected)
        sub = proc.wait_type("subscribed", channel=channel)
        c.check("subscribes a history channel: recoverable and positioned",
                sub and sub.get("recoverable") is True and sub.get("positioned") is True and sub.get("epoch"), sub)
        results = [self.http.publish(channel, {"n": n}) for n in (1, 2, 3)]
        c.check("/api/publish answers offsets 1..3 in the subscription's epoch",
                [r and r.get("offset") for r in results] == [1, 2, 3]
                and all(r and r.get("epoch") == (sub or {}).get("epoch") for r in results), results)
        pubs = self.publications(proc, channel, 3)
        c.check("receives the 3 in order with offsets 1..3",
                [(p.get("offset"), p.get("data")) for p in pubs] == [(n, {"n": n}) for n in (1, 2, 3)], pubs)
        mark = proc.mark()
        proc.send(op="history", channel=channel, limit=10)
        history = proc.wait_type("history", start=mark, channel=channel)
        c.check("the SDK's history: offsets 1..3, top 3, same epoch",
                history and [p.get("offset") for p in history.get("publications", [])] == [1, 2, 3]
                and history.get("offset") == 3 and history.get("epoch") == (sub or {}).get("epoch"),
                history or proc.seen("request_error", start=mark))
        proc.send(op="publish", channel=channel, data={"from": "client"})
        refused = proc.wait(lambda l: l.get("type") in ("request_error", "published"), WAIT_S, mark)
        c.check("the SDK's publish is refused with 103 permission denied",
                refused and refused["type"] == "request_error"
                and (refused.get("code") == 103 or "103" in str(refused.get("message"))), refused)

    def recover(self, sdk):
        c = self.c
        channel = f"feed:recover-{RUN}-{sdk}"
        proc = self.subscribed_with_position(sdk, channel)
        mark = self.drop_and_wait_gone(proc)
        offsets, took_ms = self.publish_many(channel, 2, 100)
        c.check("100 published while it was away (offsets 2..101)", offsets == list(range(2, 102)),
                {"offsets": offsets, "took_ms": took_ms})
        again = proc.wait_type("subscribed", RECONNECT_S, mark, channel=channel)
        c.check("resubscribes with was_recovering true, recovered true",
                again and again.get("was_recovering") is True and again.get("recovered") is True,
                {"subscribed": again, "publishing_took_ms": took_ms})
        pubs = self.publications(proc, channel, 100, mark)
        got = [(p.get("offset"), p.get("data")) for p in pubs]
        want = [(n, {"n": n}) for n in range(2, 102)]
        c.check("exactly the 100 missed publications, in order, no duplicates", got == want,
                {"count": len(got), "first": got[:3], "last": got[-3:],
                 "out_of_place": [g for g, w in zip(got, want) if g != w][:5]})
        live = self.http.publish(channel, {"n": 102})
        got = proc.wait(lambda l: l.get("type") == "publication" and l.get("offset") == 102, WAIT_S, mark)
        c.check("then live again (offset 102)", live and got, {"publish": live, "publication": got})

    def beyond_history(self, sdk):
        c = self.c
        channel = f"chat:beyond-{RUN}-{sdk}"
        proc = self.subscribed_with_position(sdk, channel)
        mark = self.drop_and_wait_gone(proc)
        offsets, took_ms = self.publish_many(channel, 2, 80)
        c.check("80 published while it was away, on a channel that keeps 50",
                offsets == list(range(2, 82)), {"offsets": offsets, "took_ms": took_ms})
        again = proc.wait_type("subscribed", RECONNECT_S, mark, channel=channel)
        c.check("resubscribes and the app is told: was_recovering true, recovered false",
                again and again.get("was_recovering") is True and again.get("recovered") is False,
                {"subscribed": again, "publishing_took_ms": took_ms})
        live = self.http.publish(channel, {"n": 82})
        got = proc.wait(lambda l: l.get("type") == "publication" and l.get("offset") == 82, WAIT_S, mark)
        c.check("and the subscription is live afterwards (offset 82)", live and got,
                {"publish": live, "publication": got})

    def refused_tokens(self, sdk):
        c = self.c
        for name, argv in (("a forged token", ["--token-secret", FORGED_SECRET]), ("no token", ["--no-token"])):
            channel = f"chat:refused-{RUN}-{sdk}"
            proc = self.client(sdk, *argv, "--subscribe", channel)
            gone = proc.wait_type("disconnected")
            c.check(f"{name} is refused: disconnected with 3500",
                    gone and gone.get("code") == 3500 and not proc.seen("connected"),
                    {"disconnected": gone, "connected": proc.seen("connected")})
            if gone:
                after = proc.mark()
                time.sleep(2.0)
                c.check(f"{name}: the SDK does not reconnect after 3500",
                        not proc.seen("connecting", after) and not proc.seen("connected", after),
                        proc.lines[after:])
            proc.close()

    def api(self):
        """/api/history and the key, over plain HTTP."""
        c = self.c
        channel = f"chat:api-{RUN}"
        results = [self.http.publish(channel, {"n": n}) for n in (1, 2, 3)]
        epoch = (results[0] or {}).get("epoch")
        status, body = self.http.post("/api/history", {"channel": channel, "limit": 10})
        result = body.get("result", {}) if isinstance(body, dict) else {}
        c.check("/api/history: the 3 publications, top offset 3, the epoch",
                status == 200 and result.get("publications") == [{"data": {"n": n}, "offset": n} for n in (1, 2, 3)]
                and result.get("offset") == 3 and result.get("epoch") == epoch, {"status": status, "body": body})
        status, body = self.http.post("/api/history", {"channel": channel, "limit": 10,
                                                      "since": {"offset": 1, "epoch": epoch}, "reverse": False})
        result = body.get("result", {}) if isinstance(body, dict) else {}
        c.check("/api/history since offset 1: offsets 2, 3",
                status == 200 and [p.get("offset") for p in result.get("publications", [])] == [2, 3],
                {"status": status, "body": body})
        status, body = self.http.post("/api/history", {"channel": channel, "limit": 10,
                                                      "since": {"offset": 1, "epoch": "another-epoch"}})
        c.check("/api/history since another epoch: error 112 unrecoverable position",
                body == {"error": {"code": 112, "message": "unrecoverable position"}}, {"status": status, "body": body})
        status, body = self.http.post("/api/history", {"channel": f"news-{RUN}", "limit": 10})
        c.check("/api/history on a channel without history: error 108 not available",
                body == {"error": {"code": 108, "message": "not available"}}, {"status": status, "body": body})
        status, body = self.http.post("/api/publish", {"channel": f"news-{RUN}", "data": {"x": 1}})
        c.check("/api/publish on a channel without history: {\"result\":{}}",
                status == 200 and body == {"result": {}}, {"status": status, "body": body})
        status, body = self.http.post("/api/publish", {"channel": channel, "data": {"n": 4}}, key=None)
        c.check("/api/publish without the key: 401", status == 401, {"status": status, "body": body})
        status, body = self.http.post("/api/history", {"channel": channel, "limit": 10}, key="wrong-key-0123456789")
        c.check("/api/history with a wrong key: 401", status == 401, {"status": status, "body": body})
        status, body = self.http.post("/api/publish", None, raw=b'{"channel": ')
        c.check("/api/publish with malformed JSON: 400", status == 400, {"status": status, "body": body})

    def twonodes(self):
        two_nodes(self)

    def restart(self):
        """Both SDKs subscribed; the server restarts (memory history: a new epoch)."""
        c = self.c
        procs = {}
        for sdk in ("node", "python"):
            channel = f"chat:restart-{RUN}-{sdk}"
            procs[sdk] = (channel, self.subscribed_with_position(sdk, channel))
        old_epochs = {sdk: (proc.wait_type("subscribed", channel=channel) or {}).get("epoch")
                      for sdk, (channel, proc) in procs.items()}
        marks = {sdk: proc.mark() for sdk, (_, proc) in procs.items()}
        self.http.close()
        self.server.restart()
        for sdk, (channel, proc) in procs.items():
            again = proc.wait_type("subscribed", RECONNECT_S, marks[sdk], channel=channel)
            c.check(f"{sdk}: after the restart it resubscribes with was_recovering true, recovered false",
                    again and again.get("was_recovering") is True and again.get("recovered") is False,
                    again or proc.lines[marks[sdk]:][-10:])
            c.check(f"{sdk}: in a new epoch", again and again.get("epoch") and again.get("epoch") != old_epochs[sdk],
                    {"old": old_epochs[sdk], "subscribed": again})
            result = self.http.publish(channel, {"n": "after"})
            got = proc.wait(lambda l: l.get("type") == "publication" and l.get("data") == {"n": "after"},
                            WAIT_S, marks[sdk])
            c.check(f"{sdk}: publications after the restart arrive (offset 1 of the new epoch)",
                    result and result.get("offset") == 1 and got and got.get("offset") == 1,
                    {"publish": result, "publication": got})


def two_nodes(suite):
    """Two nodes joined by a real Redis (history in Redis Streams), each SDK behind a proxy
    that moves it from node A to node B: it recovers exactly what it missed, on B."""
    c = suite.c
    redis = RedisServer()
    nodes = [Ringcast(suite.server.binary, suite.server.log_path, ["--redis", redis.url()]) for _ in range(2)]
    proxies = []
    try:
        for node in nodes:
            node.start()
        a, b = nodes
        api_a, api_b = Api(a), Api(b)
        for sdk in ("node", "python"):
            channel = f"feed:two-{RUN}-{sdk}"
            proxy = SwitchProxy(a.address)
            proxies.append(proxy)
            proc = suite.client(sdk, "--token-secret", SECRET, "--subscribe", channel, address=proxy.address)
            sub = proc.wait_type("subscribed", channel=channel)
            # The node's Redis subscription of the channel is confirmed before the reply.
            first = api_b.publish(channel, {"n": 1})
            got = proc.wait_type("publication", channel=channel)
            c.check(f"{sdk}: on node A, receives offset 1 published on node B",
                    sub and first and first.get("offset") == 1 and got and got.get("offset") == 1,
                    {"subscribed": sub, "publish": first, "publication": got})
            mark = proc.mark()
            proxy.switch(b.address)
            gone = proc.wait(lambda l: l.get("type") in ("disconnected", "connecting"), WAIT_S, mark)
            c.check(f"{sdk}: its network to node A drops", gone, gone)
            offsets = [(api_a if n % 2 else api_b).publish(channel, {"n": n}) for n in range(2, 102)]
            c.check(f"{sdk}: 100 published on both nodes while it was away (offsets 2..101, one epoch)",
                    [o and o.get("offset") for o in offsets] == list(range(2, 102))
                    and len({o and o.get("epoch") for o in offsets}) == 1, offsets[:2] + offsets[-2:])
            again = proc.wait_type("subscribed", RECONNECT_S, mark, channel=channel)
            c.check(f"{sdk}: resubscribes on node B with was_recovering true, recovered true",
                    again and again.get("was_recovering") is True and again.get("recovered") is True, again)
            pubs = suite.publications(proc, channel, 100, mark)
            got = [(p.get("offset"), p.get("data")) for p in pubs]
            want = [(n, {"n": n}) for n in range(2, 102)]
            c.check(f"{sdk}: exactly the 100 missed, in order, no duplicates, on the other node", got == want,
                    {"count": len(got), "first": got[:3], "last": got[-3:]})
            live = api_a.publish(channel, {"n": 102})
            got = proc.wait(lambda l: l.get("type") == "publication" and l.get("offset") == 102, WAIT_S, mark)
            c.check(f"{sdk}: then live on node B (offset 102, published on node A)", live and got,
                    {"publish": live, "publication": got})
            proc.close()
        api_a.close()
        api_b.close()
    finally:
        for proxy in proxies:
            proxy.close()
        for node in nodes:
            node.stop()
        redis.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.environ.get("RINGCAST_BIN", "target/release/ringcast"))
    parser.add_argument("--only", default="")
    parser.add_argument("--skip", default="")
    parser.add_argument("--log", default="/tmp/ringcast-centrifugo-suite.log")
    parser.add_argument("--deadline-s", type=float, default=600.0,
                        help="the whole run stops (and fails) after this long")
    args = parser.parse_args()
    chosen = [s for s in (args.only.split(",") if args.only else SCENARIOS) if s and s not in args.skip.split(",")]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    binary = args.bin if os.path.isabs(args.bin) else os.path.join(REPO, args.bin)
    if not os.access(binary, os.X_OK):
        parser.error(f"{binary} is not there: build it (cargo build --release)")
    if not os.path.isdir(os.path.join(HERE, "node_modules", "centrifuge")) or not os.path.exists(PYTHON):
        parser.error("the client libraries are missing: bash tests/clients/install.sh")

    checks = Checks()
    server = Ringcast(binary, args.log)
    suite = Suite(args, checks, server)

    def out_of_time():
        print(json.dumps({"type": "check", "scenario": checks.scenario, "name": "the run ends before its deadline",
                          "ok": False, "detail": f"{args.deadline_s} s"}), flush=True)
        suite.close_all()
        server.stop()
        print(f"{checks.passed} passed, {checks.failed + 1} failed", flush=True)
        os._exit(1)
    timer = threading.Timer(args.deadline_s, out_of_time)
    timer.daemon = True
    timer.start()
    try:
        server.start()
        # Bounded: one step per scenario.
        for name in chosen:
            checks.scenario = name
            try:
                getattr(suite, name)()
            except Exception as error:  # a scenario that broke is a failed check, and the suite goes on
                checks.check("scenario ran to the end", False, f"{type(error).__name__}: {error}")
            finally:
                suite.close_all()
    finally:
        timer.cancel()
        suite.close_all()
        suite.http.close()
        server.stop()
    print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
    sys.exit(0 if checks.failed == 0 else 1)


if __name__ == "__main__":
    main()
