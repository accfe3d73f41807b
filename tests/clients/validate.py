#!/usr/bin/env python3
"""Runs the real-client scenarios of tests/clients against one Pusher-compatible server and
prints one JSON line per check, then the plain summary line "N passed, N failed".

  python3 tests/clients/validate.py --server-cmd CMD [--port 18107] [--only a,b] [--skip a,b]
  python3 tests/clients/validate.py --server-cmd 'bench/peers/soketi/start.sh' --port 18107

The server is started by this script (so it can restart it): CMD runs through `sh -c` in its
own session with PORT, WEBHOOK_URL and PUSHER_APP_ID/_KEY/_SECRET in its environment, from the
repository root; it must serve the app on 127.0.0.1:$PORT and post webhooks (if any) to
$WEBHOOK_URL. SIGTERM stops it. Before it starts, this script starts the auth endpoint and the
webhook receiver (auth-server.js, ephemeral ports on 127.0.0.1).

Scenarios (--only/--skip take these names): channels, sdk_node, sdk_python, negative, echo,
presence, client_events, user, cache, subscription_count, webhooks, browser, restart. Each check line:
{"type":"check","scenario":..,"name":..,"ok":true|false,"detail":..}. Exit code 0 when every
check passed, 1 otherwise; every process this script starts is stopped before it exits.
Uses the tools installed by tests/clients/install.sh (node_modules, .venv, chromium).
"""
import argparse
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PYTHON = os.path.join(HERE, ".venv", "bin", "python")
#: Longest wait for one expected observation, in seconds.
WAIT_S = 8.0
#: Longest a client process may take to exit after its stdin closed, in seconds.
EXIT_S = 5.0
SCENARIOS = ("channels", "sdk_node", "sdk_python", "negative", "echo", "presence", "client_events",
             "user", "cache", "subscription_count", "webhooks", "browser", "restart")


class Proc:
    """One client script: JSON lines out (collected by a thread), JSON commands in."""

    def __init__(self, argv, name, env=None):
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        self.p = subprocess.Popen(argv, cwd=HERE, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
                                  start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.stderr = []

    def _read(self):
        # Bounded: by the process's output (ends at EOF).
        for raw in self.p.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"type": "unparsed", "text": raw.strip()[:300]}
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    def _drain_stderr(self):
        # Bounded: by the process's stderr; keeps the last 50 lines.
        for raw in self.p.stderr:
            self.stderr = (self.stderr + [raw.rstrip()])[-50:]

    def send(self, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()

    def wait(self, pred, timeout=WAIT_S, start=0):
        """The first line (from index `start`) matching `pred`, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            # Bounded: by the deadline.
            while True:
                for line in self.lines[start:]:
                    if pred(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def wait_type(self, kind, timeout=WAIT_S, start=0, **fields):
        return self.wait(lambda l: l.get("type") == kind and all(l.get(k) == v for k, v in fields.items()),
                         timeout, start)

    def mark(self):
        with self.cond:
            return len(self.lines)

    def seen(self, kind, start=0, **fields):
        with self.cond:
            return [l for l in self.lines[start:]
                    if l.get("type") == kind and all(l.get(k) == v for k, v in fields.items())]

    def close(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.close()
            except OSError:
                pass
            try:
                self.p.wait(EXIT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(EXIT_S)
        return self.p.returncode


class Checks:
    """Prints and counts check results."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.scenario = ""

    def check(self, name, ok, detail=None):
        ok = bool(ok)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        line = {"type": "check", "scenario": self.scenario, "name": name, "ok": ok}
        if detail is not None:
            line["detail"] = detail
        print(json.dumps(line), flush=True)
        return ok


def port_listening(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Server:
    """The server under test, started through `sh -c CMD` in its own session."""

    def __init__(self, cmd, port, env, log_path):
        self.cmd, self.port, self.env, self.log_path = cmd, port, env, log_path
        self.p = None

    def start(self, timeout=30.0):
        if port_listening(self.port):
            raise SystemExit(f"port {self.port} is already in use")
        log = open(self.log_path, "a")
        self.p = subprocess.Popen(["sh", "-c", self.cmd], cwd=REPO, env={**os.environ, **self.env},
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        deadline = time.monotonic() + timeout
        # Bounded: by the deadline.
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise SystemExit(f"server exited with {self.p.returncode}; see {self.log_path}")
            if port_listening(self.port):
                time.sleep(0.3)
                return
            time.sleep(0.1)
        raise SystemExit(f"server not listening on {self.port} within {timeout} s; see {self.log_path}")

    def stop(self):
        if self.p is None or self.p.poll() is not None:
            return
        os.killpg(self.p.pid, signal.SIGTERM)
        try:
            self.p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait(5)
        # Bounded: 50 tries; the port may linger a moment after the process ended.
        for _ in range(50):
            if not port_listening(self.port):
                break
            time.sleep(0.1)


class Suite:
    """The scenarios; each uses fresh client processes and channel names."""

    def __init__(self, args, checks, auth_url):
        self.args, self.c, self.auth_url = args, checks, auth_url
        self.procs = []
        self.app_env = {"PUSHER_APP_ID": args.app_id, "PUSHER_APP_KEY": args.key, "PUSHER_APP_SECRET": args.secret}

    def node(self, script, *argv, name=None):
        proc = Proc(["node", script, *argv], name or script, self.app_env)
        self.procs.append(proc)
        return proc

    def client(self, *argv, name="pusher-client"):
        return self.node("pusher-client.js", "--port", str(self.args.port),
                         "--auth-endpoint", f"{self.auth_url}/pusher/auth",
                         "--user-auth-endpoint", f"{self.auth_url}/pusher/user-auth",
                         "--timeout-ms", "60000", *argv, name=name)

    def sdk(self, *ops):
        """Runs ops through pusher-sdk.js; returns the answer lines."""
        proc = self.node("pusher-sdk.js", "--port", str(self.args.port), *[json.dumps(o) for o in ops])
        proc.wait_type("done", timeout=20)
        proc.close()
        return proc.seen("answer") + proc.seen("request_error")

    def subscribed(self, proc, *channels):
        return all(proc.wait_type("subscribed", channel=ch) for ch in channels)

    def close_all(self):
        # Bounded: by the processes started.
        for proc in self.procs:
            proc.close()
        self.procs = []

    # --- scenarios -------------------------------------------------------------------------

    def channels(self):
        c = self.c
        a = self.client("--subscribe", "pub-v1,private-v1")
        b = self.client("--subscribe", "pub-v1,private-v1")
        c.check("pusher-js connects (socket_id N.N)",
                a.wait(lambda l: l.get("type") == "connected" and l["socket_id"].replace(".", "", 1).isdigit()))
        c.check("public and private subscriptions succeed", self.subscribed(a, "pub-v1", "private-v1")
                and self.subscribed(b, "pub-v1", "private-v1"))
        a_id = a.wait_type("connected")["socket_id"]
        answers = self.sdk({"op": "trigger", "channel": "pub-v1", "event": "one", "data": {"n": 1}})
        c.check("trigger on one channel answers 200", answers and answers[0].get("status") == 200, answers)
        c.check("public event received with its data",
                a.wait(lambda l: l.get("type") == "event" and l["event"] == "one" and l["data"] == {"n": 1}))
        self.sdk({"op": "trigger", "channels": ["pub-v1", "private-v1"], "event": "many", "data": "x",
                  "socket_id": a_id})
        got_b = b.wait(lambda l: l.get("type") == "event" and l["event"] == "many" and l["channel"] == "private-v1")
        c.check("trigger on many channels reaches the others (private included)", got_b and
                b.wait(lambda l: l.get("type") == "event" and l["event"] == "many" and l["channel"] == "pub-v1"))
        time.sleep(0.3)
        c.check("socket_id exclusion: the excluded connection got nothing",
                not a.seen("event", event="many"), a.seen("event", event="many"))
        self.sdk({"op": "batch", "batch": [{"channel": "pub-v1", "name": "b1", "data": "1"},
                                           {"channel": "private-v1", "name": "b2", "data": "2"}]})
        c.check("triggerBatch events both arrive",
                a.wait_type("event", event="b1") and a.wait_type("event", event="b2"))
        a.send(op="unsubscribe", channel="pub-v1")
        a.wait_type("unsubscribed", channel="pub-v1")
        time.sleep(0.3)
        mark = a.mark()
        self.sdk({"op": "trigger", "channel": "pub-v1", "event": "after-unsub", "data": "z"})
        c.check("still-subscribed client gets the event after the other unsubscribed",
                b.wait_type("event", event="after-unsub"))
        time.sleep(0.3)
        c.check("unsubscribed client gets nothing", not a.seen("event", start=mark, event="after-unsub"))

    def sdk_answers(self, runner, name):
        c = self.c
        if "presence" in self.args.without.split(","):
            return self.sdk_answers_public(runner, name)
        obs = self.client("--subscribe", f"presence-{name},pub-{name}", "--user-id", "u-sdk")
        self.subscribed(obs, f"presence-{name}", f"pub-{name}")
        ops = [
            {"op": "trigger", "channel": f"pub-{name}", "event": "e", "data": {"a": 1}},
            {"op": "trigger", "channels": [f"pub-{name}", f"presence-{name}"], "event": "e2", "data": "s",
             "socket_id": "123.456"},
            {"op": "batch", "batch": [{"channel": f"pub-{name}", "name": "b", "data": "{}"}]},
            {"op": "channels"},
            {"op": "channels", "prefix": "presence-", "info": "user_count"},
            {"op": "channel", "channel": f"pub-{name}", "info": "subscription_count"},
            {"op": "channel", "channel": f"presence-{name}", "info": "user_count"},
            {"op": "users", "channel": f"presence-{name}"},
        ]
        answers = runner(ops)
        by = {i: a for i, a in enumerate(answers)}
        c.check("every answer is HTTP 200", all(a.get("status") == 200 for a in answers) and len(answers) == len(ops),
                answers)
        body = lambda i: (by.get(i) or {}).get("body") or {}
        c.check("GET /channels lists the occupied channel", f"pub-{name}" in body(3).get("channels", {}), body(3))
        presence = body(4).get("channels", {}).get(f"presence-{name}", {})
        c.check("GET /channels?filter_by_prefix=presence-&info=user_count", presence.get("user_count") == 1
                and all(k.startswith("presence-") for k in body(4).get("channels", {})), body(4))
        c.check("GET /channels/{name} occupied + subscription_count",
                body(5).get("occupied") is True and body(5).get("subscription_count") == 1, body(5))
        c.check("GET /channels/{presence} user_count", body(6).get("user_count") == 1, body(6))
        c.check("GET /channels/{presence}/users", body(7).get("users") == [{"id": "u-sdk"}], body(7))
        c.check("the triggers arrived", obs.wait_type("event", event="e") and obs.wait_type("event", event="b")
                and obs.wait_type("event", event="e2", channel=f"presence-{name}"))

    def sdk_answers_public(self, runner, name):
        """The SDK checks that need no presence channel (`--without presence`)."""
        c = self.c
        obs = self.client("--subscribe", f"pub-{name},pub2-{name}")
        self.subscribed(obs, f"pub-{name}", f"pub2-{name}")
        ops = [
            {"op": "trigger", "channel": f"pub-{name}", "event": "e", "data": {"a": 1}},
            {"op": "trigger", "channels": [f"pub-{name}", f"pub2-{name}"], "event": "e2", "data": "s",
             "socket_id": "123.456"},
            {"op": "batch", "batch": [{"channel": f"pub-{name}", "name": "b", "data": "{}"}]},
            {"op": "channels"},
            {"op": "channel", "channel": f"pub-{name}", "info": "subscription_count"},
            {"op": "channel", "channel": f"empty-{name}", "info": "subscription_count"},
        ]
        answers = runner(ops)
        by = {i: a for i, a in enumerate(answers)}
        c.check("every answer is HTTP 200", all(a.get("status") == 200 for a in answers) and len(answers) == len(ops),
                answers)
        body = lambda i: (by.get(i) or {}).get("body") or {}
        c.check("GET /channels lists the occupied channels",
                {f"pub-{name}", f"pub2-{name}"} <= set(body(3).get("channels", {})), body(3))
        c.check("GET /channels/{name} occupied + subscription_count",
                body(4).get("occupied") is True and body(4).get("subscription_count") == 1, body(4))
        c.check("GET /channels/{empty} not occupied", body(5).get("occupied") is False, body(5))
        c.check("the triggers arrived", obs.wait_type("event", event="e") and obs.wait_type("event", event="b")
                and obs.wait_type("event", event="e2", channel=f"pub2-{name}"))

    def sdk_node(self):
        self.sdk_answers(lambda ops: self.sdk(*ops), "sdknode")

    def sdk_python(self):
        def run(ops):
            proc = Proc([PYTHON, "pusher_sdk.py", "--port", str(self.args.port),
                         *[json.dumps(o) for o in ops]], "pusher_sdk.py", self.app_env)
            self.procs.append(proc)
            proc.wait_type("done", timeout=20)
            proc.close()
            return proc.seen("answer") + proc.seen("sdk_error")
        self.sdk_answers(run, "sdkpy")

    def negative(self):
        c = self.c
        ev = {"name": "n", "channel": "neg", "data": "d"}
        answers = self.sdk(
            {"op": "raw", "path": "/events", "body": ev, "secret": "wrong-secret"},
            {"op": "raw", "path": "/events", "body": ev, "timestamp_offset_s": -700},
            {"op": "raw", "path": "/events", "body": ev, "body_md5": "0" * 32},
            {"op": "raw", "path": "/events",
             "body": {"name": "e", "channels": [f"c{i}" for i in range(101)], "data": "x"}},
            {"op": "raw", "path": "/events",
             "body": {"name": "big", "channel": "neg", "data": "x" * (self.args.max_payload_bytes + 100)}},
        )
        st = [a.get("status") for a in answers]
        c.check("wrong signature: 401", len(st) > 0 and st[0] == 401, answers[0:1])
        c.check("stale auth_timestamp (700 s old): 401", len(st) > 1 and st[1] == 401, answers[1:2])
        c.check("wrong body_md5: 401", len(st) > 2 and st[2] in (400, 401), answers[2:3])
        c.check("101 channels in one trigger: 400", len(st) > 3 and st[3] == 400, answers[3:4])
        c.check("payload over the limit: 413", len(st) > 4 and st[4] == 413, answers[4:5])
        wrong_app = self.node("pusher-sdk.js", "--port", str(self.args.port), "--app-id", "999999",
                              json.dumps({"op": "trigger", "channel": "neg", "event": "e", "data": "x"}))
        wrong_app.wait_type("done", timeout=20)
        wrong_app.close()
        ans = wrong_app.seen("answer")
        c.check("unknown app id on the HTTP API: 4xx", ans and 400 <= ans[0]["status"] < 500, ans)
        base = f"ws://127.0.0.1:{self.args.port}/app"
        for label, path, code in (("unknown app key", "no-such-key?protocol=7", 4001),
                                  ("no protocol version", f"{self.args.key}", 4008),
                                  ("unsupported protocol version", f"{self.args.key}?protocol=99", 4007)):
            raw = self.node("raw-ws.js", "--url", f"{base}/{path}", "--timeout-ms", "6000")
            closed = raw.wait_type("close", timeout=5)
            messages = raw.seen("message")
            c.check(f"{label} on the WebSocket: pusher:error + close {code}",
                    closed and closed["code"] == code and messages and messages[0]["data"].get("event") == "pusher:error",
                    messages + raw.seen("close"))
        forged = Proc(["node", "auth-server.js", "--exit-on-eof", "--forge-secret", "not-the-secret", "--timeout-ms", "60000"],
                      "forged-auth", self.app_env)
        self.procs.append(forged)
        url = forged.wait_type("listening")["url"]
        victim = self.node("pusher-client.js", "--port", str(self.args.port), "--auth-endpoint",
                           f"{url}/pusher/auth", "--subscribe", "private-forged", "--raw", "--timeout-ms", "20000")
        refused = victim.wait(lambda l: l.get("type") == "raw" and l["message"].get("event") in
                              ("pusher:subscription_error", "pusher:error"), 6)
        c.check("private subscribe with a forged auth is refused", refused and not victim.seen("subscribed"), refused)

    def echo(self):
        c = self.c
        e = self.node("echo-client.mjs", "--port", str(self.args.port), "--auth-endpoint",
                      f"{self.auth_url}/pusher/auth", "--channel", "orders", "--private", "orders",
                      "--listen", "OrderShipped,.plain", "--timeout-ms", "60000", name="echo")
        c.check("Echo.channel and Echo.private subscribe",
                e.wait_type("subscribed", channel="orders") and e.wait_type("subscribed", channel="private-orders"))
        self.sdk({"op": "trigger", "channels": ["orders", "private-orders"], "event": "App\\Events\\OrderShipped",
                  "data": {"id": 7}},
                 {"op": "trigger", "channel": "orders", "event": "plain", "data": "p"})
        c.check("Echo.channel(..).listen('OrderShipped') gets App\\Events\\OrderShipped",
                e.wait(lambda l: l.get("type") == "event" and l["channel"] == "orders" and l["listen"] == "OrderShipped"
                       and l["data"] == {"id": 7}))
        c.check("Echo.private(..).listen(..) gets it on private-orders",
                e.wait_type("event", channel="private-orders", listen="OrderShipped"))
        c.check("listen('.plain') gets the un-namespaced event", e.wait_type("event", channel="orders", listen=".plain"))

    def presence(self):
        c = self.c
        a = self.client("--subscribe", "presence-room", "--user-id", "alice", "--user-info", '{"name":"Alice"}')
        sub_a = a.wait_type("subscribed", channel="presence-room")
        c.check("first member sees only herself", sub_a and sub_a.get("count") == 1
                and sub_a.get("me", {}).get("id") == "alice" and sub_a.get("members") == {"alice": {"name": "Alice"}},
                sub_a)
        b = self.client("--subscribe", "presence-room", "--user-id", "bob", "--user-info", '{"name":"Bob"}')
        sub_b = b.wait_type("subscribed", channel="presence-room")
        c.check("second member sees both", sub_b and sub_b.get("count") == 2 and set(sub_b.get("members", {})) ==
                {"alice", "bob"}, sub_b)
        added = a.wait_type("member_added", channel="presence-room", id="bob")
        c.check("member_added with user_info", added and added.get("info") == {"name": "Bob"}, added)
        b2 = self.client("--subscribe", "presence-room", "--user-id", "bob", name="bob-second-tab")
        b2.wait_type("subscribed", channel="presence-room")
        time.sleep(0.5)
        c.check("a user's second connection is not a new member",
                len(a.seen("member_added", id="bob")) == 1, a.seen("member_added"))
        users = self.sdk({"op": "users", "channel": "presence-room"},
                         {"op": "channel", "channel": "presence-room", "info": "user_count"})
        ids = sorted(u["id"] for u in (users[0].get("body") or {}).get("users", []))
        c.check("GET /users lists alice and bob once", ids == ["alice", "bob"], users[0])
        c.check("user_count is 2", (users[1].get("body") or {}).get("user_count") == 2, users[1])
        b2.close()
        time.sleep(1.0)
        c.check("closing one of bob's two connections: no member_removed", not a.seen("member_removed", id="bob"))
        b.close()
        removed = a.wait_type("member_removed", channel="presence-room", id="bob")
        c.check("member_removed when bob's last connection closes", removed, a.seen("member_removed"))

    def client_events(self):
        c = self.c
        a = self.client("--subscribe", "private-chat,presence-chat,pub-chat", "--user-id", "ann")
        b = self.client("--subscribe", "private-chat,presence-chat", "--user-id", "ben")
        self.subscribed(a, "private-chat", "presence-chat", "pub-chat")
        self.subscribed(b, "private-chat", "presence-chat")
        a.send(op="trigger", channel="private-chat", event="client-typing", data={"who": "ann"})
        c.check("client event reaches the other private subscriber",
                b.wait(lambda l: l.get("type") == "event" and l["event"] == "client-typing" and l["channel"] == "private-chat"
                       and l["data"] == {"who": "ann"}))
        time.sleep(0.3)
        c.check("client event is not echoed to the sender", not a.seen("event", event="client-typing"))
        a.send(op="trigger", channel="presence-chat", event="client-cursor", data={"x": 1})
        ev = b.wait_type("event", event="client-cursor", channel="presence-chat")
        c.check("client event on presence carries user_id", ev and ev.get("user_id") == "ann", ev)
        raw = self.node("raw-ws.js", "--url", f"ws://127.0.0.1:{self.args.port}/app/{self.args.key}?protocol=7",
                        "--send", json.dumps({"event": "pusher:subscribe", "data": {"channel": "pub-chat"}}),
                        "--timeout-ms", "10000")
        raw.wait(lambda l: l.get("type") == "message" and l["data"].get("event") == "pusher_internal:subscription_succeeded")
        raw.send(event="client-nope", channel="pub-chat", data={})
        refused = raw.wait(lambda l: l.get("type") == "message" and l["data"].get("event") == "pusher:error", 4)
        c.check("client event on a public channel: pusher:error", refused, refused)
        time.sleep(0.3)
        c.check("and nobody receives it", not a.seen("event", event="client-nope"))

    def user(self):
        c = self.c
        a = self.client("--user-id", "uid-7", "--signin", name="signed-in")
        ok = a.wait_type("signin_success")
        c.check("pusher:signin -> pusher:signin_success", ok and (ok.get("user_data") or {}).get("id") == "uid-7", ok)
        time.sleep(0.5)
        answers = self.sdk({"op": "send_to_user", "user_id": "uid-7", "event": "notice", "data": {"m": 1}})
        c.check("sendToUser answers 200", answers and answers[0].get("status") == 200, answers)
        got = a.wait_type("user_event", event="notice")
        c.check("sendToUser reaches the signed-in connection", got and got.get("data") == {"m": 1}, got)
        mark = a.mark()
        answers = self.sdk({"op": "terminate", "user_id": "uid-7"})
        c.check("terminateUserConnections answers 200", answers and answers[0].get("status") == 200, answers)
        c.check("the user's connection is closed",
                a.wait(lambda l: l.get("type") == "state" and l["previous"] == "connected", start=mark))

    def cache(self):
        c = self.c
        self.sdk({"op": "trigger", "channel": "cache-news", "event": "headline", "data": {"v": 1}},
                 {"op": "trigger", "channel": "cache-news", "event": "headline", "data": {"v": 2}})
        a = self.client("--subscribe", "cache-news,cache-empty")
        got = a.wait_type("event", channel="cache-news", event="headline")
        c.check("subscribing to a cache channel replays the last event", got and got.get("data") == {"v": 2}, got)
        time.sleep(0.3)
        c.check("and only the last one", len(a.seen("event", channel="cache-news")) == 1, a.seen("event"))
        c.check("a cache channel with nothing cached: pusher:cache_miss", a.wait_type("cache_miss", channel="cache-empty"))

    def subscription_count(self):
        # Needs the app's subscription count events on (ringcast-server.sh turns them on).
        c = self.c
        a = self.client("--subscribe", "pub-counted", name="counted-a")
        self.subscribed(a, "pub-counted")
        first = a.wait(lambda l: l.get("type") == "subscription_count" and l["channel"] == "pub-counted"
                       and l.get("count") == 1)
        c.check("pusher_internal:subscription_count 1 for the first subscriber", first, a.seen("subscription_count"))
        mark = a.mark()
        b = self.client("--subscribe", "pub-counted", name="counted-b")
        self.subscribed(b, "pub-counted")
        two = a.wait(lambda l: l.get("type") == "subscription_count" and l.get("count") == 2, start=mark)
        c.check("a second subscriber: every subscriber gets subscription_count 2", two
                and b.wait(lambda l: l.get("type") == "subscription_count" and l.get("count") == 2),
                (a.seen("subscription_count"), b.seen("subscription_count")))
        mark = a.mark()
        b.close()
        one = a.wait(lambda l: l.get("type") == "subscription_count" and l.get("count") == 1, start=mark)
        c.check("one leaves: subscription_count 1 again", one, a.seen("subscription_count"))

    def webhooks(self):
        c = self.c
        hooks = self.webhook_proc
        mark = hooks.mark()
        a = self.client("--subscribe", "presence-hook,private-hook,cache-hook-empty", "--user-id", "hooky")
        self.subscribed(a, "presence-hook", "private-hook")
        b = self.client("--subscribe", "private-hook", "--user-id", "hook2")
        self.subscribed(b, "private-hook")
        a.send(op="trigger", channel="private-hook", event="client-ping", data={"p": 1})
        b.wait_type("event", event="client-ping")

        def got(name, channel, timeout=WAIT_S):
            return hooks.wait(lambda l: l.get("type") == "webhook" and any(
                e.get("name") == name and e.get("channel") == channel for e in l.get("events", [])), timeout, mark)
        occupied = got("channel_occupied", "presence-hook")
        c.check("channel_occupied webhook, valid signature", occupied and occupied["valid"], occupied)
        c.check("member_added webhook", got("member_added", "presence-hook"))
        c.check("client_event webhook", got("client_event", "private-hook"))
        c.check("cache_miss webhook", got("cache_miss", "cache-hook-empty"))
        a.close()
        b.close()
        c.check("member_removed webhook", got("member_removed", "presence-hook", 15))
        c.check("channel_vacated webhook", got("channel_vacated", "presence-hook", 15))
        c.check("every webhook had a valid signature", all(l["valid"] for l in hooks.seen("webhook", start=mark)),
                [l for l in hooks.seen("webhook", start=mark) if not l["valid"]])

    def browser(self):
        c = self.c
        page = self.node("browser.js", "--port", str(self.args.port), "--channel", "browser-channel",
                         "--timeout-ms", "60000", name="browser")
        c.check("the page connects and subscribes", page.wait_type("page_subscription", status="subscribed", timeout=20))
        self.sdk({"op": "trigger", "channel": "browser-channel", "event": "greeting", "data": {"text": "hello 🚀"}})
        shown = page.wait_type("page_event", event="greeting")
        c.check("the page shows the event", shown and shown["text"] == 'greeting: {"text":"hello 🚀"}', shown)
        c.check("no page errors", not page.seen("page_error"), page.seen("page_error"))

    def restart(self):
        c = self.c
        a = self.client("--subscribe", "pub-restart,private-restart")
        self.subscribed(a, "pub-restart", "private-restart")
        first = a.wait_type("connected")["socket_id"]
        mark = a.mark()
        self.server.stop()
        c.check("the client notices the server went away",
                a.wait(lambda l: l.get("type") == "state" and l["previous"] == "connected", start=mark))
        self.server.start()
        again = a.wait(lambda l: l.get("type") == "connected" and l["socket_id"] != first, 30, mark)
        c.check("pusher-js reconnects by itself after the restart", again, again)
        c.check("and resubscribes", a.wait_type("subscribed", start=mark, channel="pub-restart", timeout=10)
                and a.wait_type("subscribed", start=mark, channel="private-restart", timeout=10))
        answers = self.sdk({"op": "trigger", "channels": ["pub-restart", "private-restart"], "event": "after",
                            "data": 1})
        # The trigger's answer and everything the client logged since the restart, to tell a
        # refused trigger from an event that never arrived.
        c.check("events after the restart arrive", a.wait_type("event", start=mark, event="after", channel="pub-restart")
                and a.wait_type("event", start=mark, event="after", channel="private-restart"),
                {"answers": answers, "client": a.lines[mark:][-20:]})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-cmd", required=True)
    parser.add_argument("--port", type=int, default=18107)
    parser.add_argument("--app-id", default=os.environ.get("PUSHER_APP_ID", "1"))
    parser.add_argument("--key", default=os.environ.get("PUSHER_APP_KEY", "app-key"))
    parser.add_argument("--secret", default=os.environ.get("PUSHER_APP_SECRET", "app-secret"))
    parser.add_argument("--max-payload-bytes", type=int, default=10240,
                        help="the server's event payload limit (Pusher's 10 KB; soketi: 100 KB)")
    parser.add_argument("--only", default="")
    parser.add_argument("--without", default="",
                        help="feature groups the server lacks, whose checks are left out (presence)")
    parser.add_argument("--skip", default="")
    parser.add_argument("--log", default="/tmp/ringcast-clients-server.log")
    args = parser.parse_args()
    chosen = [s for s in (args.only.split(",") if args.only else SCENARIOS) if s and s not in args.skip.split(",")]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")

    checks = Checks()
    app_env = {"PUSHER_APP_ID": args.app_id, "PUSHER_APP_KEY": args.key, "PUSHER_APP_SECRET": args.secret}
    auth = Proc(["node", "auth-server.js", "--exit-on-eof", "--timeout-ms", "900000"], "auth-server", app_env)
    listening = auth.wait_type("listening", timeout=10)
    if not listening:
        raise SystemExit(f"auth-server did not start: {auth.stderr}")
    server = Server(args.server_cmd, args.port,
                    {**app_env, "PORT": str(args.port), "WEBHOOK_URL": f"{listening['url']}/pusher/webhook"}, args.log)
    suite = Suite(args, checks, listening["url"])
    suite.server, suite.webhook_proc = server, auth
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
        suite.close_all()
        server.stop()
        auth.close()
    print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
    sys.exit(0 if checks.failed == 0 else 1)


if __name__ == "__main__":
    main()
