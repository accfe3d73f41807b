#!/usr/bin/env python3
"""Smoke test for one Pusher-protocol peer (soketi, sockudo, or ringcast's /app endpoint):
the interface a Pusher load harness drives, checked with no client library.

  smoke_pusher.py PORT [--host 127.0.0.1] [--channel smoke] [--subs 3]
                  [--app-id 1 --key app-key --secret app-secret]   (env PUSHER_APP_ID/_KEY/_SECRET)

Connects SUBS subscribers to /app/{key}?protocol=7 (the `websockets` client, no extension
offered), checks pusher:connection_established (socket_id N.N, activity_timeout), subscribes
each to CHANNEL (pusher_internal:subscription_succeeded), checks pusher:ping -> pusher:pong and
a WebSocket ping. Waits until every subscriber is live (triggers "ready-N" probes until each has
seen one), then triggers 5 events with signed POST /apps/{id}/events (Pusher's REST signing,
standard library only) over one keep-alive HTTP/1.1 connection (reported as keepalive=no, not
failed, when the server closes it after each answer, as soketi does), and checks that every subscriber
got all 5 as events named "smoke" on CHANNEL, in order, data unchanged, and nothing after them.
Payloads: 11 B ASCII, UTF-8 with 4-byte characters, 306 B, 9000 B (under Pusher's 10 KB limit).

Needs Python 3 and `websockets` (smoke-all.sh makes a venv under /tmp). Exit status 0 = PASS;
the last line says PASS or FAIL with details.
"""
import argparse
import asyncio
import hashlib
import hmac
import http.client
import json
import os
import re
import sys
import time

from websockets.asyncio.client import connect

MESSAGES = [
    "msg-1 hello",
    "msg-2 \u00fcn\u00efc\u00f8d\u00e9 \u2713 \U0001F680",
    "msg-3 " + "x" * 300,
    "msg-4 " + "y" * 8994,
    "msg-5 end",
]
#: Longest wait for any one expected frame, in seconds.
WAIT_S = 5.0


class Trigger:
    """Signed Pusher trigger requests over one keep-alive HTTP/1.1 connection."""

    def __init__(self, host, port, app_id, key, secret):
        self.conn = http.client.HTTPConnection(host, port, timeout=10)
        self.app_id, self.key, self.secret = app_id, key, secret
        self.statuses = []
        #: Answers that closed the connection (soketi sends `Connection: close` on every one).
        self.closed = 0

    def post(self, channel, name, data):
        body = json.dumps({"name": name, "channel": channel, "data": data}).encode()
        path = f"/apps/{self.app_id}/events"
        query = {"auth_key": self.key, "auth_timestamp": str(int(time.time())), "auth_version": "1.0",
                 "body_md5": hashlib.md5(body).hexdigest()}
        signed = "&".join(f"{k}={query[k]}" for k in sorted(query))
        query["auth_signature"] = hmac.new(self.secret.encode(), f"POST\n{path}\n{signed}".encode(),
                                           hashlib.sha256).hexdigest()
        self.conn.request("POST", path + "?" + "&".join(f"{k}={v}" for k, v in query.items()), body=body,
                          headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        text = resp.read()
        self.statuses.append(resp.status)
        if resp.status != 200:
            raise RuntimeError(f"trigger answered {resp.status}: {text[:200]!r}")
        if resp.will_close:
            # Reported, not failed: http.client opens a new connection for the next request.
            self.closed += 1
            self.conn.close()
        return text


async def next_event(ws, name=None, timeout=WAIT_S):
    """The next Pusher frame (optionally with event `name`), skipping others."""
    deadline = time.monotonic() + timeout
    # Bounded: by the deadline.
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {name or 'frame'} within {timeout} s")
        frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        if name is None or frame.get("event") == name:
            return frame


async def subscriber(url, channel, index):
    ws = await connect(url, compression=None, max_size=2**20, open_timeout=WAIT_S)
    established = await next_event(ws, "pusher:connection_established")
    data = json.loads(established["data"])
    if not re.fullmatch(r"\d+\.\d+", data.get("socket_id", "")):
        raise RuntimeError(f"sub{index}: socket_id {data.get('socket_id')!r} is not N.N")
    if not isinstance(data.get("activity_timeout"), int):
        raise RuntimeError(f"sub{index}: no activity_timeout in {data}")
    await ws.send(json.dumps({"event": "pusher:ping", "data": {}}))
    await next_event(ws, "pusher:pong")
    await asyncio.wait_for(await ws.ping(), WAIT_S)
    await ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}))
    ok = await next_event(ws, "pusher_internal:subscription_succeeded")
    if ok.get("channel") != channel:
        raise RuntimeError(f"sub{index}: subscription_succeeded for {ok.get('channel')!r}")
    return ws


async def run(args):
    url = f"ws://{args.host}:{args.port}/app/{args.key}?protocol=7&client=smoke&version=1"
    subs = [await subscriber(url, args.channel, i) for i in range(args.subs)]
    trigger = Trigger(args.host, args.port, args.app_id, args.key, args.secret)
    # Live when each subscriber has seen a ready probe; bounded: 20 probes.
    live = [False] * len(subs)
    for n in range(20):
        trigger.post(args.channel, "ready", f"ready-{n}")
        for i, ws in enumerate(subs):
            try:
                frame = await next_event(ws, "ready", timeout=0.5 if live[i] else 1.0)
                live[i] = live[i] or frame.get("channel") == args.channel
            except TimeoutError:
                pass
        if all(live):
            break
    if not all(live):
        raise RuntimeError(f"subscribers never live: {live}")
    # Drain late probes so the check below starts clean.
    await asyncio.sleep(0.3)
    for ws in subs:
        while True:
            try:
                frame = await next_event(ws, timeout=0.05)
                if frame.get("event") != "ready":
                    raise RuntimeError(f"unexpected frame before the messages: {frame}")
            except TimeoutError:
                break
    started = time.monotonic()
    for text in MESSAGES:
        trigger.post(args.channel, "smoke", text)
    for i, ws in enumerate(subs):
        for k, text in enumerate(MESSAGES):
            frame = await next_event(ws)
            if frame.get("event") != "smoke" or frame.get("channel") != args.channel or frame.get("data") != text:
                raise RuntimeError(f"sub{i} message {k + 1}: got {json.dumps(frame)[:200]}")
    # From the first trigger to the last message at the last subscriber.
    elapsed_ms = (time.monotonic() - started) * 1000
    for i, ws in enumerate(subs):
        try:
            extra = await next_event(ws, timeout=0.3)
            raise RuntimeError(f"sub{i}: unexpected frame after the messages: {json.dumps(extra)[:200]}")
        except TimeoutError:
            pass
    for ws in subs:
        await ws.close()
    return f"subs={len(subs)} messages={len(MESSAGES)} trigger_status={sorted(set(trigger.statuses))} keepalive={'no' if trigger.closed else 'yes'} delivery_ms={elapsed_ms:.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--channel", default="smoke")
    parser.add_argument("--subs", type=int, default=3)
    parser.add_argument("--app-id", default=os.environ.get("PUSHER_APP_ID", "1"))
    parser.add_argument("--key", default=os.environ.get("PUSHER_APP_KEY", "app-key"))
    parser.add_argument("--secret", default=os.environ.get("PUSHER_APP_SECRET", "app-secret"))
    args = parser.parse_args()
    try:
        detail = asyncio.run(asyncio.wait_for(run(args), 60))
    except Exception as error:  # any failure is the smoke's verdict
        print(f"FAIL port={args.port} {type(error).__name__}: {error}")
        sys.exit(1)
    print(f"PASS port={args.port} {detail}")


if __name__ == "__main__":
    main()
