#!/usr/bin/env python3
"""Runs the Pusher scenarios of issue 14 ACROSS TWO ringcast NODES joined by one Redis, with
real clients (pusher-js, the npm `pusher` SDK, the SDK's webhook check in auth-server.js), and
prints one JSON line per check, then the plain summary line "N passed, N failed".

  RINGCAST_BIN=target/release/ringcast python3 tests/clients/nodes.py [--only a,b] [--skip a,b]

It starts everything itself on 127.0.0.1 with free ports, and stops all of it at exit:
`redis-server` (no persistence), auth-server.js (channel/user auth endpoints and the webhook
receiver), and two nodes A and B:
  ringcast --listen 127.0.0.1:PA --api-listen 127.0.0.1:QA --shards 2 --redis redis://127.0.0.1:R
           --apps FILE --log info --drain-timeout 2s
with an apps file like ringcast-server.sh writes (client events on, every webhook kind to the
receiver). pusher-js clients connect to node A or B by port; SDK calls go to either node's API.

Scenarios (--only/--skip take these names): broadcast, presence, client_events, user, cache,
webhooks, node_crash. `broadcast` (a trigger on one node reaches clients on both) is the
harness's own check; the others are issue 14's cross-node rules, with the bounds the server
states: channel_occupied within 3 s of the first subscribe, channel_vacated about 3 s after the
last leave plus up to 1 s (checked within 10 s), membership lease 5 s (a killed node's members
leave within 10 s). Check lines are validate.py's: {"type":"check","scenario","name","ok",
"detail"}; a failed check's detail carries the last lines of the clients involved, and the
summary names the node logs (--log-dir). Exit code 0 when every check passed, 1 otherwise.
Uses the tools installed by tests/clients/install.sh (node_modules; no browser needed).
"""
import argparse
import http.client
import json
import os
import signal
import socket
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from validate import Checks, Proc, port_listening  # noqa: E402  (the same process and check classes)

SCENARIOS = ("broadcast", "presence", "client_events", "user", "cache", "webhooks", "node_crash")
#: Longest wait for one expected observation, in seconds.
WAIT_S = 8.0
#: Longest a node or Redis may take to start, in seconds.
START_S = 20.0
#: The bounds the server states (issue 14), in seconds.
OCCUPIED_WITHIN_S = 3.0
VACATED_WITHIN_S = 10.0
MEMBER_LEASE_WITHIN_S = 10.0
CRASH_VACATED_WITHIN_S = 15.0
#: Lines of a client's output a failed check carries.
LOG_LINES = 12


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return [l.rstrip() for l in f.readlines()[-lines:]]
    except OSError as error:
        return [f"({error})"]


def http_status(port, path):
    """The status of GET path on 127.0.0.1:port, or None when nothing answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


class Stopped(Exception):
    """A check the rest of a scenario (or part) needs failed: what follows would only time out."""


class StartFailed(Exception):
    """A node or Redis did not start; the message carries its log's last lines."""


class Service:
    """A server process (redis-server or a ringcast node) in its own session, output to a log."""

    def __init__(self, name, argv, log_path):
        self.name, self.argv, self.log_path = name, argv, log_path
        log = open(log_path, "a")
        log.write(f"\n=== {time.strftime('%H:%M:%S')} {name}: {' '.join(argv)}\n")
        log.flush()
        self.p = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        log.close()

    def alive(self):
        return self.p.poll() is None

    def fail(self, why):
        self.stop()
        raise StartFailed(json.dumps({"service": self.name, "why": why, "log": log_tail(self.log_path)}))

    def wait_ports(self, *ports, timeout=START_S):
        deadline = time.monotonic() + timeout
        # Bounded: by the deadline.
        while time.monotonic() < deadline:
            if not self.alive():
                self.fail(f"exited with {self.p.returncode}")
            if all(port_listening(p) for p in ports):
                return
            time.sleep(0.1)
        self.fail(f"not listening on {ports} within {timeout} s")

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)

    def kill(self):
        """kill -9: no drain, nothing said to Redis or the clients."""
        self.stop(signal.SIGKILL, 5.0)


class Node(Service):
    """One ringcast node: WebSocket port, API port, and the webhook URL its apps file names."""

    def __init__(self, name, binary, redis_port, apps_path, webhook_url, log_path):
        self.ws_port, self.api_port, self.webhook_url = free_port(), free_port(), webhook_url
        argv = [binary, "--listen", f"127.0.0.1:{self.ws_port}", "--api-listen", f"127.0.0.1:{self.api_port}",
                "--shards", "2", "--redis", f"redis://127.0.0.1:{redis_port}", "--apps", apps_path,
                "--log", "info", "--drain-timeout", "2s"]
        super().__init__(f"node {name}", argv, log_path)

    def wait_ready(self):
        self.wait_ports(self.ws_port, self.api_port)
        deadline = time.monotonic() + START_S
        # Bounded: by the deadline.
        while http_status(self.ws_port, "/readyz") != 200:
            if time.monotonic() > deadline or not self.alive():
                self.fail("/readyz did not answer 200")
            time.sleep(0.1)


class Cluster:
    """Redis and nodes A and B; `ensure` (re)starts what a scenario needs."""

    def __init__(self, args, app_env):
        self.args, self.app_env = args, app_env
        self.redis = None
        self.nodes = {}
        self.apps_files = {}
        os.makedirs(args.log_dir, exist_ok=True)
        # This run's own: two runs at once must not read each other's webhook URL.
        self.apps_dir = tempfile.mkdtemp(prefix="ringcast-nodes-apps-")

    def log(self, name):
        return os.path.join(self.args.log_dir, f"{name}.log")

    def start_redis(self):
        self.redis_port = free_port()
        self.redis = Service("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"], self.log("redis"))
        self.redis.wait_ports(self.redis_port)

    def apps_file(self, webhook_url):
        """An apps TOML like ringcast-server.sh's: one app, client events on, every webhook kind."""
        if webhook_url not in self.apps_files:
            path = os.path.join(self.apps_dir, f"apps-{len(self.apps_files)}.toml")
            with open(path, "w") as f:
                f.write(f'[[app]]\nid = "{self.args.app_id}"\nkey = "{self.args.key}"\n'
                        f'secret = "{self.args.secret}"\n\n[app.limits]\nclient_events = "on"\n\n'
                        f'[[app.webhooks]]\nurl = "{webhook_url}"\n')
            self.apps_files[webhook_url] = path
        return self.apps_files[webhook_url]

    def ensure(self, webhook_url):
        """Nodes A and B running with webhooks to `webhook_url`; a dead node or one sending
        elsewhere is (re)started. Both start before either is waited for."""
        stale = [n for n in ("A", "B") if n not in self.nodes or not self.nodes[n].alive()
                 or self.nodes[n].webhook_url != webhook_url]
        # Bounded: two nodes.
        for name in stale:
            if name in self.nodes:
                self.nodes[name].stop()
            self.nodes[name] = Node(name, self.args.bin, self.redis_port, self.apps_file(webhook_url), webhook_url,
                                    self.log(f"node-{name}"))
        for name in stale:
            self.nodes[name].wait_ready()

    def ws(self, name):
        return self.nodes[name].ws_port

    def api(self, name):
        return self.nodes[name].api_port

    def log_grep(self, word, lines=5):
        """The last lines of each node's log that mention `word` (a failed check's detail)."""
        out = {}
        # Bounded: two nodes.
        for name in ("A", "B"):
            found = [l for l in log_tail(self.log(f"node-{name}"), 400) if word.lower() in l.lower()]
            out[name] = found[-lines:]
        return out

    def stop_all(self):
        # Bounded: two nodes and Redis.
        for node in self.nodes.values():
            node.stop()
        if self.redis:
            self.redis.stop()
        shutil.rmtree(self.apps_dir, ignore_errors=True)


def webhook_events(line, **want):
    return [e for e in line.get("events") or [] if all(e.get(k) == v for k, v in want.items())]


def error_code(line):
    """The pusher:error code of a pusher-client.js `error` line, if it is one."""
    error = line.get("error")
    data = error.get("data") if isinstance(error, dict) else None
    return data.get("code") if isinstance(data, dict) else None


class Suite:
    """The scenarios; each uses fresh client processes and its own channel names."""

    def __init__(self, args, checks, cluster, auth_url, hooks, app_env):
        self.args, self.c, self.cluster = args, checks, cluster
        self.auth_url, self.hooks, self.app_env = auth_url, hooks, app_env
        self.procs = []

    # --- helpers ---------------------------------------------------------------------------

    def check(self, name, ok, detail=None, procs=()):
        """A check; when it fails, its detail carries the last lines of `procs`."""
        if not ok and procs:
            detail = {"detail": detail, "clients": {p.name: p.lines[-LOG_LINES:] + [
                {"stderr": p.stderr[-5:]}] * bool(p.stderr) for p in procs}}
        return self.c.check(name, ok, detail)

    def require(self, name, ok, detail=None, procs=()):
        """A check the rest of the scenario needs: when it fails the scenario stops (Stopped)."""
        if not self.check(name, ok, detail, procs):
            raise Stopped(name)
        return ok

    def part(self, scenario, step):
        """Runs one part of a scenario; a Stopped part is reported and the next part runs."""
        try:
            step()
        except Stopped as stopped:
            report_stopped(scenario, stopped)

    def node_proc(self, script, *argv, name=None):
        proc = Proc(["node", script, *argv], name or script, self.app_env)
        self.procs.append(proc)
        return proc

    def client(self, node, *argv, name):
        """pusher-js connected to node `node` ("A" or "B")."""
        return self.node_proc("pusher-client.js", "--port", str(self.cluster.ws(node)),
                              "--auth-endpoint", f"{self.auth_url}/pusher/auth",
                              "--user-auth-endpoint", f"{self.auth_url}/pusher/user-auth",
                              "--timeout-ms", "90000", *argv, name=name)

    def sdk(self, node, *ops):
        """Runs ops through pusher-sdk.js against node `node`'s API; returns the answer lines."""
        proc = self.node_proc("pusher-sdk.js", "--port", str(self.cluster.api(node)), *[json.dumps(o) for o in ops],
                              name=f"sdk@{node}")
        proc.wait_type("done", timeout=20)
        proc.close()
        return proc.seen("answer") + proc.seen("request_error")

    def subscribed(self, proc, *channels):
        return all(proc.wait_type("subscribed", channel=ch) for ch in channels)

    def got_event(self, proc, event, channel, start=0, timeout=WAIT_S):
        return proc.wait_type("event", timeout=timeout, start=start, event=event, channel=channel)

    def users(self, node, channel):
        """(sorted ids from GET /users, user_count from GET /channels/{name}, the answers) on `node`."""
        answers = self.sdk(node, {"op": "users", "channel": channel},
                           {"op": "channel", "channel": channel, "info": "user_count"})
        body = lambda i: (answers[i].get("body") if len(answers) > i else None) or {}
        users = body(0).get("users") if isinstance(body(0), dict) else None
        ids = sorted(u.get("id") for u in users) if isinstance(users, list) else None
        count = body(1).get("user_count") if isinstance(body(1), dict) else None
        return ids, count, answers

    def users_until(self, node, channel, want_ids, timeout):
        """Polls `users` until the ids are `want_ids` or `timeout` passes; the last reading."""
        deadline = time.monotonic() + timeout
        # Bounded: by the deadline.
        while True:
            ids, count, answers = self.users(node, channel)
            if ids == want_ids and count == len(want_ids) or time.monotonic() > deadline:
                return ids, count, answers
            time.sleep(0.3)

    def hook_wait(self, start, timeout, hooks=None, **want):
        """The first webhook request (from line `start`) carrying an event with `want`'s fields."""
        hooks = hooks or self.hooks
        return hooks.wait(lambda l: l.get("type") == "webhook" and webhook_events(l, **want), timeout, start)

    def hook_count(self, start, hooks=None, **want):
        """Events with `want`'s fields in the webhook requests since line `start` that were accepted."""
        hooks = hooks or self.hooks
        return sum(len(webhook_events(l, **want)) for l in hooks.seen("webhook", start=start)
                   if l.get("status") == 200)

    def hook_summary(self, start, hooks=None):
        """Every webhook event since `start`, short: for a failed check's detail."""
        hooks = hooks or self.hooks
        return [{"t_ms": l.get("t_ms"), "status": l.get("status"), "valid": l.get("valid"),
                 "events": [{k: e.get(k) for k in ("name", "channel", "user_id", "event") if e.get(k) is not None}
                            for e in l.get("events") or []]}
                for l in hooks.seen("webhook", start=start)][-30:]

    def close_all(self):
        # Bounded: by the processes started.
        for proc in self.procs:
            proc.close()
        self.procs = []

    # --- scenarios -------------------------------------------------------------------------

    def broadcast(self):
        a = self.client("A", "--subscribe", "pub-bcast,private-bcast", name="sub@A")
        b = self.client("B", "--subscribe", "pub-bcast,private-bcast", name="sub@B")
        self.require("clients on A and on B subscribe (public and private)",
                   self.subscribed(a, "pub-bcast", "private-bcast") and self.subscribed(b, "pub-bcast", "private-bcast"),
                   procs=(a, b))
        answers = self.sdk("A", {"op": "trigger", "channels": ["pub-bcast", "private-bcast"], "event": "hello",
                                 "data": {"n": 1}})
        self.check("trigger through A's API answers 200", answers and answers[0].get("status") == 200, answers)
        on_a = self.got_event(a, "hello", "pub-bcast")
        on_b = self.got_event(b, "hello", "pub-bcast")
        self.check("a public trigger on A reaches the client on A", on_a and on_a.get("data") == {"n": 1}, on_a, (a,))
        self.check("a public trigger on A reaches the client on B", on_b and on_b.get("data") == {"n": 1}, on_b, (b,))
        self.check("a private trigger on A reaches the client on B", self.got_event(b, "hello", "private-bcast"),
                   procs=(b,))
        answers = self.sdk("B", {"op": "trigger", "channel": "pub-bcast", "event": "back", "data": "b"})
        self.check("a trigger on B reaches the client on A",
                   self.got_event(a, "back", "pub-bcast"), {"answers": answers}, (a,))

    def presence(self):
        ch = "presence-x"
        alice = self.client("A", "--subscribe", ch, "--user-id", "alice", "--user-info", '{"name":"Alice"}',
                            name="alice@A")
        sub = alice.wait_type("subscribed", channel=ch)
        self.require("alice subscribes on A", sub and sub.get("count") == 1 and (sub.get("me") or {}).get("id") == "alice",
                   sub, (alice,))
        bob = self.client("B", "--subscribe", ch, "--user-id", "bob", "--user-info", '{"name":"Bob"}', name="bob@B")
        sub = bob.wait_type("subscribed", channel=ch)
        self.require("bob subscribes on B", sub, procs=(bob,))
        self.check("bob on B: subscription_succeeded lists alice (on A) and bob, count 2",
                   sub and sub.get("count") == 2 and sub.get("members") == {"alice": {"name": "Alice"},
                                                                             "bob": {"name": "Bob"}}, sub, (bob,))
        added = alice.wait_type("member_added", channel=ch, id="bob")
        self.check("member_added for bob (B) reaches alice (A) with user_info",
                   added and added.get("info") == {"name": "Bob"}, added, (alice,))
        mark = alice.mark()
        alice.send(op="members", channel=ch)
        members = alice.wait_type("members", start=mark, channel=ch)
        self.check("alice's member list has both, count 2",
                   members and members.get("count") == 2 and set(members.get("members") or {}) == {"alice", "bob"},
                   members, (alice,))
        bob2 = self.client("A", "--subscribe", ch, "--user-id", "bob", "--user-info", '{"name":"Bob"}',
                           name="bob-2nd@A")
        sub = bob2.wait_type("subscribed", channel=ch)
        self.check("bob's second connection (on A) sees both, count 2",
                   sub and sub.get("count") == 2 and set(sub.get("members") or {}) == {"alice", "bob"}, sub, (bob2,))
        time.sleep(1.0)
        self.check("bob's second connection is not a new member (one member_added at alice)",
                   len(alice.seen("member_added", id="bob")) == 1, alice.seen("member_added"), (alice,))
        readings = {node: self.users(node, ch) for node in ("A", "B")}
        for node in ("A", "B"):
            ids, count, answers = readings[node]
            self.check(f"GET /channels/{ch}/users on {node} lists alice and bob once", ids == ["alice", "bob"],
                       answers)
            self.check(f"user_count on {node} is 2", count == 2, answers)
        self.check("A and B agree (same ids, same user_count)",
                   readings["A"][:2] == readings["B"][:2] and readings["A"][1] is not None,
                   {n: readings[n][:2] for n in readings})
        bob2.close()
        time.sleep(2.0)
        self.check("closing bob's connection on A (his other one is on B): no member_removed at alice",
                   added and not alice.seen("member_removed", id="bob"),
                   {"member_added_seen": bool(added), "member_removed": alice.seen("member_removed")}, (alice,))
        ids, count, answers = self.users("A", ch)
        self.check("and A's GET /users still lists bob", ids == ["alice", "bob"], answers)
        bob.close()
        removed = alice.wait_type("member_removed", channel=ch, id="bob", timeout=10)
        self.check("closing bob's last connection (on B): member_removed at alice (on A)", removed, procs=(alice,))
        time.sleep(0.5)
        self.check("exactly once", len(alice.seen("member_removed", id="bob")) == 1, alice.seen("member_removed"))
        for node in ("A", "B"):
            ids, count, answers = self.users_until(node, ch, ["alice"], 5)
            self.check(f"then GET /users and user_count on {node}: alice only", ids == ["alice"] and count == 1,
                       answers)

    def client_events(self):
        channels = "private-chat,presence-chat,pub-chat"
        ann = self.client("A", "--subscribe", channels, "--user-id", "ann", name="ann@A")
        ben = self.client("B", "--subscribe", channels, "--user-id", "ben", name="ben@B")
        self.require("ann on A and ben on B subscribe private-chat, presence-chat, pub-chat",
                   self.subscribed(ann, *channels.split(",")) and self.subscribed(ben, *channels.split(",")),
                   procs=(ann, ben))
        ann.send(op="trigger", channel="private-chat", event="client-typing", data={"who": "ann"})
        got = self.got_event(ben, "client-typing", "private-chat")
        self.check("client-typing on private-chat from ann (A) reaches ben (B)",
                   got and got.get("data") == {"who": "ann"}, got, (ann, ben))
        time.sleep(0.5)
        self.check("and is not echoed to ann", got and not ann.seen("event", event="client-typing"),
                   {"relayed": bool(got), "echoed": ann.seen("event", event="client-typing")})
        ann.send(op="trigger", channel="presence-chat", event="client-cursor", data={"x": 1})
        got = self.got_event(ben, "client-cursor", "presence-chat")
        self.check("client event on presence-chat reaches ben with user_id \"ann\"",
                   got and got.get("user_id") == "ann" and got.get("data") == {"x": 1}, got, (ann, ben))
        raw = self.node_proc("raw-ws.js", "--url", f"ws://127.0.0.1:{self.cluster.ws('A')}/app/{self.args.key}?protocol=7",
                             "--send", json.dumps({"event": "pusher:subscribe", "data": {"channel": "pub-chat"}}),
                             "--timeout-ms", "20000", name="raw@A")
        raw.wait(lambda l: l.get("type") == "message" and
                 (l.get("data") or {}).get("event") == "pusher_internal:subscription_succeeded")
        raw.send(event="client-nope", channel="pub-chat", data={})
        refused = raw.wait(lambda l: l.get("type") == "message" and (l.get("data") or {}).get("event") == "pusher:error",
                           4)
        self.check("client event on a public channel: pusher:error", refused, refused, (raw,))
        time.sleep(0.5)
        self.check("and nobody on A or B receives it", refused and
                   not ann.seen("event", event="client-nope") and not ben.seen("event", event="client-nope"),
                   {"refused": bool(refused),
                    "received": ann.seen("event", event="client-nope") + ben.seen("event", event="client-nope")})
        self.rate_limit(ben)

    def rate_limit(self, receiver):
        """One fresh connection sends 15 client events at once; the limit is 10 a second."""
        burst = self.client("A", "--subscribe", "private-chat", "--user-id", "burst", name="burst@A")
        self.require("a third connection (on A) subscribes private-chat", self.subscribed(burst, "private-chat"),
                     procs=(burst,))
        mark = receiver.mark()
        # Bounded: 15 events, written back to back.
        for i in range(15):
            burst.send(op="trigger", channel="private-chat", event="client-burst", data={"i": i})
        time.sleep(2.5)
        refused = [l for l in burst.seen("error") if error_code(l) == 4301]
        arrived = receiver.seen("event", start=mark, event="client-burst")
        detail = {"refused_4301": len(refused), "arrived": [(l.get("data") or {}).get("i") for l in arrived],
                  "other_errors": [l for l in burst.seen("error") if error_code(l) != 4301][:5]}
        self.check("15 client events at once: pusher:error 4301 for those over 10/s (at least 5)",
                   len(refused) >= 5, detail, (burst,))
        self.check("the others arrive on the other node (at most 10, and all that were not refused)",
                   0 < len(arrived) <= 10 and len(arrived) == 15 - len(refused), detail, (receiver,))

    def user(self):
        one = self.client("A", "--user-id", "uid-7", "--signin", "--raw", name="uid-7@A")
        two = self.client("B", "--user-id", "uid-7", "--signin", "--raw", name="uid-7@B")
        for proc, node in ((one, "A"), (two, "B")):
            ok = proc.wait_type("signin_success")
            self.require(f"uid-7 on {node}: pusher:signin -> signin_success",
                       ok and (ok.get("user_data") or {}).get("id") == "uid-7", ok, (proc,))
        for proc, node in ((one, "A"), (two, "B")):
            joined = proc.wait(lambda l: l.get("type") == "raw" and (l.get("message") or {}).get("channel") ==
                               "#server-to-user-uid-7" and (l.get("message") or {}).get("event") ==
                               "pusher_internal:subscription_succeeded", 5)
            self.check(f"uid-7 on {node} joins #server-to-user-uid-7", joined, procs=(proc,))
        answers = self.sdk("B", {"op": "send_to_user", "user_id": "uid-7", "event": "notice", "data": {"m": 1}})
        self.check("sendToUser through B's API answers 200", answers and answers[0].get("status") == 200, answers)
        for proc, node in ((one, "A"), (two, "B")):
            got = proc.wait_type("user_event", event="notice")
            self.check(f"it reaches uid-7's connection on {node}", got and got.get("data") == {"m": 1}, got, (proc,))
        marks = (one.mark(), two.mark())
        answers = self.sdk("A", {"op": "terminate", "user_id": "uid-7"})
        self.check("terminateUserConnections through A's API answers 200",
                   answers and answers[0].get("status") == 200, answers)
        for (proc, node), mark in zip(((one, "A"), (two, "B")), marks):
            closed = proc.wait(lambda l: l.get("type") == "state" and l.get("previous") == "connected", start=mark)
            self.check(f"it closes uid-7's connection on {node} (pusher-js leaves 'connected')", closed, closed, (proc,))

    def cache(self):
        answers = self.sdk("A", {"op": "trigger", "channel": "cache-news", "event": "headline", "data": {"v": 1}},
                           {"op": "trigger", "channel": "cache-news", "event": "headline", "data": {"v": 2}})
        self.check("v1 then v2 on cache-news through A's API: 200, 200",
                   len(answers) == 2 and all(a.get("status") == 200 for a in answers), answers)
        b = self.client("B", "--subscribe", "cache-news,cache-empty", name="cache@B")
        got = self.got_event(b, "headline", "cache-news")
        self.check("a client subscribing on B gets the last event (v2)", got and got.get("data") == {"v": 2}, got, (b,))
        time.sleep(0.5)
        self.check("and only that one", len(b.seen("event", channel="cache-news")) == 1, b.seen("event"), (b,))
        self.check("cache-empty on B: pusher:cache_miss", b.wait_type("cache_miss", channel="cache-empty"), procs=(b,))

    def webhooks(self):
        # Bounded: three parts; each stops on its own failed precondition, the next still runs.
        for step in (self.webhooks_across_nodes, self.webhooks_three_seconds, self.webhooks_retried):
            self.part("webhooks", step)
            self.close_all()

    def webhooks_across_nodes(self):
        mark = self.hooks.mark()
        not_run = "not run: presence-wh was not subscribed on both nodes"
        wa = self.client("A", "--subscribe", "private-wh,presence-wh", "--user-id", "wa", name="wa@A")
        self.require("wa subscribes private-wh on A", wa.wait_type("subscribed", channel="private-wh"), procs=(wa,))
        first = time.monotonic()
        occupied = self.hook_wait(mark, WAIT_S, name="channel_occupied", channel="private-wh")
        latency = round(time.monotonic() - first, 2)
        self.check(f"channel_occupied within {OCCUPIED_WITHIN_S:g} s of the first subscribe (on A)",
                   occupied and latency <= OCCUPIED_WITHIN_S, {"latency_s": latency, "webhooks": self.hook_summary(mark)})
        self.require("the receiver gets webhooks from the nodes", self.hooks.seen("webhook", start=mark),
                     {"node_logs": self.cluster.log_grep("webhook")})
        wb = self.client("B", "--subscribe", "private-wh,cache-wh-empty,presence-wh", "--user-id", "wb", name="wb@B")
        wa2 = self.client("B", "--subscribe", "presence-wh", "--user-id", "wa", name="wa-2nd@B")
        self.require("wb subscribes private-wh and cache-wh-empty on B",
                     self.subscribed(wb, "private-wh", "cache-wh-empty"), procs=(wb,))
        presence = self.check("presence-wh subscribed on both nodes (wa on A; wb and wa's 2nd connection on B)",
                              self.subscribed(wa, "presence-wh") and self.subscribed(wb, "presence-wh")
                              and self.subscribed(wa2, "presence-wh"), procs=(wa, wb, wa2))
        wa.send(op="trigger", channel="private-wh", event="client-ping", data={"p": 1})
        if presence:
            wa.send(op="trigger", channel="presence-wh", event="client-hi", data={"h": 1})
        self.got_event(wb, "client-ping", "private-wh")
        socket_id = (wa.wait_type("connected") or {}).get("socket_id")
        hook = self.hook_wait(mark, WAIT_S, name="client_event", channel="private-wh", event="client-ping")
        event = (webhook_events(hook, name="client_event", channel="private-wh") or [{}])[0] if hook else None
        self.check("client_event webhook (event, channel, socket_id)", event and event.get("socket_id") == socket_id,
                   {"event": event, "socket_id": socket_id, "webhooks": self.hook_summary(mark)})
        if presence:
            hook = self.hook_wait(mark, WAIT_S, name="client_event", channel="presence-wh", event="client-hi")
            event = (webhook_events(hook, name="client_event", channel="presence-wh") or [{}])[0] if hook else None
        self.check("client_event webhook on a presence channel carries user_id",
                   presence and event and event.get("user_id") == "wa",
                   {"event": event, "webhooks": self.hook_summary(mark)} if presence else not_run)
        self.check("cache_miss webhook (cache-wh-empty, subscribed on B)",
                   self.hook_wait(mark, WAIT_S, name="cache_miss", channel="cache-wh-empty"), self.hook_summary(mark))
        self.check("member_added webhook for wb (B)", presence and self.hook_wait(
            mark, WAIT_S, name="member_added", channel="presence-wh", user_id="wb"),
                   self.hook_summary(mark) if presence else not_run)
        wa.close()
        time.sleep(5.0)
        early = [e for l in self.hooks.seen("webhook", start=mark) for e in l.get("events") or []
                 if e.get("channel") in ("presence-wh", "private-wh") and
                 (e.get("name") == "channel_vacated" or e.get("name") == "member_removed" and e.get("user_id") == "wa")]
        self.check("wa's connection on A closes, wb (and wa's 2nd connection) stay on B: "
                   "no channel_vacated and no member_removed for wa within 5 s", occupied and not early,
                   {"occupied_seen": bool(occupied), "early": early})
        wa2.close()
        wb.close()
        last = time.monotonic()
        vacated = self.hook_wait(mark, VACATED_WITHIN_S, name="channel_vacated", channel="private-wh")
        latency = round(time.monotonic() - last, 2)
        self.check(f"channel_vacated within {VACATED_WITHIN_S:g} s of the last leave (on B)", vacated,
                   {"latency_s": latency, "webhooks": self.hook_summary(mark)})
        time.sleep(max(0.0, last + VACATED_WITHIN_S - time.monotonic()))
        wanted = [("channel_occupied", "private-wh", None), ("channel_vacated", "private-wh", None),
                  ("channel_occupied", "presence-wh", None), ("channel_vacated", "presence-wh", None),
                  ("member_added", "presence-wh", "wa"), ("member_added", "presence-wh", "wb"),
                  ("member_removed", "presence-wh", "wa"), ("member_removed", "presence-wh", "wb")]
        # Bounded: eight kinds of event.
        for name, channel, user in wanted:
            count = self.hook_count(mark, name=name, channel=channel, **({"user_id": user} if user else {}))
            skipped = channel.startswith("presence-") and not presence
            self.check(f"exactly one {name} {channel}{' ' + user if user else ''} "
                       f"(subscribers on both nodes, {VACATED_WITHIN_S:g} s after the last leave)",
                       count == 1 and not skipped,
                       not_run if skipped else {"count": count, "webhooks": self.hook_summary(mark)}
                       if count != 1 else None)
        invalid = [l for l in self.hooks.seen("webhook", start=mark) if not l.get("valid")]
        self.check("every webhook validates (pusher.webhook(req).isValid())",
                   self.hooks.seen("webhook", start=mark) and not invalid, invalid[:3])

    def webhooks_three_seconds(self):
        """A leave and a rejoin (on the other node) within 1 s: no vacated, no second occupied;
        on a presence channel also no member_removed and no second member_added."""
        mark = self.hooks.mark()
        first = self.client("A", "--subscribe", "pub-flap,presence-flap", "--user-id", "flapper", name="flapper@A")
        again = self.client("B", "--user-id", "flapper", name="flapper-again@B")
        self.require("flapper subscribes pub-flap on A; a second connection is ready on B",
                     first.wait_type("subscribed", channel="pub-flap") and again.wait_type("connected"),
                     procs=(first, again))
        presence = first.wait_type("subscribed", channel="presence-flap", timeout=2)
        channels = ("pub-flap", "presence-flap") if presence else ("pub-flap",)
        self.require("channel_occupied for pub-flap",
                     self.hook_wait(mark, WAIT_S, name="channel_occupied", channel="pub-flap"), self.hook_summary(mark))
        if presence:
            self.hook_wait(mark, WAIT_S, name="member_added", channel="presence-flap", user_id="flapper")
        # Bounded: two channels.
        for ch in channels:
            first.send(op="unsubscribe", channel=ch)
        left = time.monotonic()
        first.wait_type("unsubscribed", channel=channels[-1])
        time.sleep(0.3)
        for ch in channels:
            again.send(op="subscribe", channel=ch)
        rejoined = all(again.wait_type("subscribed", channel=ch, timeout=2) for ch in channels)
        gap = round(time.monotonic() - left, 2)
        self.require("leave on A, rejoin on B within 1 s", rejoined and gap <= 1.0, {"gap_s": gap, "channels": channels},
                     (again,))
        time.sleep(6.0)
        counts = {ch: {what: self.hook_count(mark, name=what, channel=ch) for what in
                       ("channel_occupied", "channel_vacated", "member_added", "member_removed")}
                  for ch in ("pub-flap", "presence-flap")}
        detail = {"counts": counts, "webhooks": self.hook_summary(mark)}
        self.check("the 3 s rule: no channel_vacated within the next 6 s", counts["pub-flap"]["channel_vacated"] == 0,
                   detail)
        self.check("and no second channel_occupied", counts["pub-flap"]["channel_occupied"] == 1, detail)
        flap = counts["presence-flap"]
        self.check("the same on a presence channel: no vacated, no second occupied, no member_removed, "
                   "one member_added", presence and flap == {"channel_occupied": 1, "channel_vacated": 0,
                                                             "member_added": 1, "member_removed": 0},
                   detail if presence else "not run: presence-flap was not subscribed")

    def webhooks_retried(self):
        """The nodes restart with webhooks to a receiver that answers 500 to its first 2."""
        fails = 2
        flaky = self.node_proc("auth-server.js", "--exit-on-eof", "--webhook-fail-first", str(fails),
                               "--timeout-ms", "600000", name="flaky-webhooks")
        listening = flaky.wait_type("listening", timeout=10)
        self.cluster.ensure(f"{listening['url']}/pusher/webhook")
        r = self.client("A", "--subscribe", "private-retry", name="retry@A")
        self.subscribed(r, "private-retry")
        accepted = flaky.wait(lambda l: l.get("type") == "webhook" and l.get("status") == 200 and
                              webhook_events(l, name="channel_occupied", channel="private-retry"), 15)
        time.sleep(2.0)
        refused = flaky.seen("webhook", status=500)
        detail = {"webhooks": self.hook_summary(0, flaky)}
        self.check(f"the receiver answered 500 to the first {fails} webhook requests", len(refused) == fails, detail,
                   (r,))
        self.check("channel_occupied still arrives (retried)", accepted, detail)
        self.check("and is accepted once", self.hook_count(0, flaky, name="channel_occupied",
                                                           channel="private-retry") == 1, detail)
        refused_events = {json.dumps(e, sort_keys=True) for l in refused for e in l.get("events") or []}
        accepted_events = [json.dumps(e, sort_keys=True) for l in flaky.seen("webhook", status=200)
                           for e in l.get("events") or []]
        self.check("every refused event is sent again and accepted exactly once",
                   refused_events and all(accepted_events.count(e) == 1 for e in refused_events), detail)

    def node_crash(self):
        mark = self.hooks.mark()
        alice = self.client("A", "--subscribe", "presence-crash", "--user-id", "alice", name="alice@A")
        # alice first, so that carol arrives as member_added.
        alice_in = self.subscribed(alice, "presence-crash")
        carol = self.client("B", "--subscribe", "presence-crash,crash-only", "--user-id", "carol", name="carol@B")
        self.require("carol on B subscribes crash-only (a channel only B has)",
                     carol.wait_type("subscribed", channel="crash-only"), procs=(carol,))
        presence = self.check("alice on A and carol on B subscribe presence-crash",
                              alice_in and self.subscribed(carol, "presence-crash"), procs=(alice, carol))
        not_run = "not run: presence-crash was not subscribed"
        if presence:
            self.check("alice (A) sees carol (B) join",
                       alice.wait_type("member_added", channel="presence-crash", id="carol"), procs=(alice,))
            ids, count, answers = self.users("A", "presence-crash")
            self.check("A's GET /users lists alice and carol", ids == ["alice", "carol"], answers)
        occupied = self.hook_wait(mark, WAIT_S, name="channel_occupied", channel="crash-only")
        self.check("channel_occupied for crash-only", occupied, self.hook_summary(mark))
        self.cluster.nodes["B"].kill()
        killed = time.monotonic()
        name = f"kill -9 node B: alice (A) gets member_removed for carol within {MEMBER_LEASE_WITHIN_S:g} s"
        if presence:
            removed_s = listed_s = None
            answers = []
            # Bounded: by the lease bound; both the push and A's API are watched, each time noted.
            while time.monotonic() < killed + MEMBER_LEASE_WITHIN_S and (removed_s is None or listed_s is None):
                if removed_s is None and alice.seen("member_removed", channel="presence-crash", id="carol"):
                    removed_s = round(time.monotonic() - killed, 2)
                if listed_s is None:
                    ids, count, answers = self.users("A", "presence-crash")
                    if ids == ["alice"] and count == 1:
                        listed_s = round(time.monotonic() - killed, 2)
                time.sleep(0.25)
            timing = {"member_removed_after_s": removed_s, "users_without_carol_after_s": listed_s}
            self.check(name, removed_s is not None, timing, (alice,))
            self.check(f"A's GET /users no longer lists carol (user_count 1) within {MEMBER_LEASE_WITHIN_S:g} s",
                       listed_s is not None, {**timing, "answers": answers})
        else:
            self.check(name, False, not_run)
        vacated = self.hook_wait(mark, max(0.5, killed + CRASH_VACATED_WITHIN_S - time.monotonic()),
                                 name="channel_vacated", channel="crash-only")
        self.check(f"channel_vacated for crash-only (only B's dead clients had it) within {CRASH_VACATED_WITHIN_S:g} s",
                   vacated, {"seen_by_s_after_kill": round(time.monotonic() - killed, 2),
                             "webhooks": self.hook_summary(mark)})
        self.check("member_removed webhook for carol",
                   presence and self.hook_wait(mark, 1, name="member_removed", channel="presence-crash",
                                               user_id="carol"),
                   self.hook_summary(mark) if presence else not_run)
        self.check("no channel_vacated for presence-crash (alice is still there)",
                   presence and vacated and not self.hook_count(mark, name="channel_vacated", channel="presence-crash"),
                   self.hook_summary(mark) if presence else not_run)


def report_stopped(scenario, stopped):
    print(json.dumps({"type": "stopped", "scenario": scenario, "after": str(stopped),
                      "why": "a check the rest needs failed; the rest was not run"}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.environ.get("RINGCAST_BIN", "target/release/ringcast"),
                        help="the ringcast binary (default $RINGCAST_BIN or target/release/ringcast)")
    parser.add_argument("--app-id", default=os.environ.get("PUSHER_APP_ID", "1"))
    parser.add_argument("--key", default=os.environ.get("PUSHER_APP_KEY", "app-key"))
    parser.add_argument("--secret", default=os.environ.get("PUSHER_APP_SECRET", "app-secret"))
    parser.add_argument("--only", default="")
    parser.add_argument("--skip", default="")
    parser.add_argument("--log-dir", default="",
                        help="node and Redis logs (default: a new /tmp/ringcast-nodes-* directory per run)")
    args = parser.parse_args()
    args.bin = os.path.abspath(os.path.join(REPO, args.bin))
    args.log_dir = args.log_dir or tempfile.mkdtemp(prefix="ringcast-nodes-")
    chosen = [s for s in (args.only.split(",") if args.only else SCENARIOS) if s and s not in args.skip.split(",")]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    if not os.access(args.bin, os.X_OK):
        parser.error(f"no ringcast binary at {args.bin} (--bin or RINGCAST_BIN)")
    # SIGTERM ends the run like Ctrl-C: the finally blocks stop everything.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    checks = Checks()
    app_env = {"PUSHER_APP_ID": args.app_id, "PUSHER_APP_KEY": args.key, "PUSHER_APP_SECRET": args.secret}
    cluster = Cluster(args, app_env)
    auth = Proc(["node", "auth-server.js", "--exit-on-eof", "--timeout-ms", "900000"], "auth-server", app_env)
    suite = None
    started = time.monotonic()
    try:
        listening = auth.wait_type("listening", timeout=10)
        if not listening:
            raise SystemExit(f"auth-server did not start: {auth.stderr}")
        webhook_url = f"{listening['url']}/pusher/webhook"
        suite = Suite(args, checks, cluster, listening["url"], auth, app_env)
        checks.scenario = "setup"
        try:
            cluster.start_redis()
            cluster.ensure(webhook_url)
            checks.check("redis-server and nodes A and B start", True,
                         {"redis": cluster.redis_port, **{n: [cluster.ws(n), cluster.api(n)] for n in cluster.nodes}})
        except StartFailed as error:
            checks.check("redis-server and nodes A and B start", False, json.loads(str(error)))
            chosen = []
        # Bounded: one step per scenario.
        for name in chosen:
            checks.scenario = name
            try:
                cluster.ensure(webhook_url)
                getattr(suite, name)()
            except Stopped as stopped:
                report_stopped(name, stopped)
            except StartFailed as error:
                checks.check("nodes (re)start", False, json.loads(str(error)))
            except Exception as error:  # a scenario that broke is a failed check, and the run goes on
                checks.check("scenario ran to the end", False,
                             {"error": f"{type(error).__name__}: {error}", "at": traceback.format_exc(limit=3)[-600:]})
            finally:
                suite.close_all()
    finally:
        if suite:
            suite.close_all()
        cluster.stop_all()
        auth.close()
    print(f"nodes.py: {time.monotonic() - started:.0f} s; node and Redis logs in {args.log_dir}", file=sys.stderr,
          flush=True)
    print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
    sys.exit(0 if checks.failed == 0 else 1)


if __name__ == "__main__":
    main()
