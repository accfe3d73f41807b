#!/usr/bin/env python3
"""Smoke test for one peer: the interface the load harness drives.

  smoke.py PORT [--host 127.0.0.1] [--channel smoke] [--subs 3]

Connects SUBS subscribers to GET /ws/{channel} with the `websockets` client
(no extension offered, like the harness), checks each answers a ping, plus
one raw-socket subscriber that offers permessage-deflate and checks frames
on the wire: one unfragmented text frame (FIN=1, opcode 1) per message and
RSV1 never set. Whether the server accepts the deflate offer is reported
(deflate=declined|accepted-unused), not failed: Nchan accepts it whenever it
is offered but sends plain frames unless told to compress.
Waits until every subscriber is live (publishes "ready-N" probes until each
has seen one), then POSTs 5 messages to /publish/{channel} over ONE
keep-alive HTTP/1.1 connection and checks that every subscriber got all 5,
in order, unchanged, as text frames, and nothing after them. Payloads cover
the 7-bit, 16-bit and 64-bit frame length forms and non-ASCII UTF-8.

Needs Python 3 and `websockets` (smoke-all.sh makes a venv under /tmp).
Exit status 0 = PASS.
"""
import argparse
import asyncio
import base64
import os
import http.client
import sys
import time

import websockets
from websockets.asyncio.client import connect

MESSAGES = [
    "msg-1 hello",
    "msg-2 \u00fcn\u00efc\u00f8d\u00e9 \u2713 \U0001F680",
    "msg-3 " + "x" * 300,  # 16-bit payload length
    "msg-4 " + "y" * 70000,  # 64-bit payload length, bigger than default body buffers
    "msg-5 end",
]


class Publisher:
    """One keep-alive HTTP/1.1 connection, like the harness uses."""

    def __init__(self, host, port, channel):
        self.conn = http.client.HTTPConnection(host, port, timeout=10)
        self.path = f"/publish/{channel}"
        self.statuses = []

    def post(self, text):
        body = text.encode()
        self.conn.request("POST", self.path, body=body,
                          headers={"Content-Type": "text/plain"})
        resp = self.conn.getresponse()
        resp.read()
        self.statuses.append(resp.status)
        if not 200 <= resp.status < 300:
            raise RuntimeError(f"publish answered {resp.status} {resp.reason}")
        if resp.will_close:
            raise RuntimeError("publish answer closed the keep-alive connection")
        return resp.status


class RawSub:
    """Hand-rolled subscriber: sees frames exactly as sent."""

    async def open(self, host, port, path):
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), 5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write((
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ).encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise RuntimeError(f"raw subscriber: {lines[0]!r}")
        hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
                for l in lines[1:] if ":" in l}
        self.deflate = "permessage-deflate" in hdrs.get("sec-websocket-extensions", "")
        self.frames = []  # decoded messages, or ("BAD", why)

    async def run(self):
        try:
            while True:
                b0, b1 = await self.reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    n = int.from_bytes(await self.reader.readexactly(2), "big")
                elif n == 127:
                    n = int.from_bytes(await self.reader.readexactly(8), "big")
                if b1 & 0x80:
                    self.frames.append(("BAD", "masked server frame"))
                payload = await self.reader.readexactly(n)
                fin, rsv, op = b0 >> 7, (b0 >> 4) & 7, b0 & 0xF
                if op >= 8:  # control frames: ignore pings/pongs, stop on close
                    if op == 8:
                        return
                    continue
                if rsv:
                    self.frames.append(("BAD", f"RSV bits {rsv:03b} set (compressed?)"))
                elif not fin or op != 1:
                    self.frames.append(("BAD", f"fin={fin} opcode={op}, want one text frame"))
                else:
                    self.frames.append(payload.decode("utf-8", "replace"))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.frames.append(("CLOSED",))

    async def close(self):
        # Masked close frame, code 1000.
        mask = os.urandom(4)
        body = (1000).to_bytes(2, "big")
        self.writer.write(bytes([0x88, 0x80 | len(body)]) + mask +
                          bytes(c ^ mask[i % 4] for i, c in enumerate(body)))
        try:
            await self.writer.drain()
        except ConnectionError:
            pass
        self.writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--channel", default="smoke")
    ap.add_argument("--subs", type=int, default=3)
    args = ap.parse_args()

    url = f"ws://{args.host}:{args.port}/ws/{args.channel}"
    subs = []
    for _ in range(args.subs):
        ws = await asyncio.wait_for(
            connect(url, max_size=None, ping_interval=None, open_timeout=5,
                    compression=None), 10)
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        if ext:
            raise RuntimeError(f"server sent an extension nobody offered: {ext!r}")
        subs.append(ws)
    raw = RawSub()
    await raw.open(args.host, args.port, f"/ws/{args.channel}")

    # RFC 6455 ping -> pong from the server.
    for ws in subs:
        pong = await ws.ping(b"smoke-ping")
        await asyncio.wait_for(pong, 5)

    received = [[] for _ in subs]

    async def reader(i, ws):
        try:
            async for frame in ws:
                if not isinstance(frame, str):
                    received[i].append(("BINARY", frame))
                else:
                    received[i].append(frame)
        except websockets.ConnectionClosed:
            received[i].append(("CLOSED",))

    tasks = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(subs)]
    received.append(raw.frames)
    tasks.append(asyncio.create_task(raw.run()))
    pub = Publisher(args.host, args.port, args.channel)

    # Wait until every subscriber is live: probe until each got a "ready-*".
    deadline = time.monotonic() + 10
    n = 0
    while not all(any(isinstance(m, str) and m.startswith("ready-") for m in r)
                  for r in received):
        if time.monotonic() > deadline:
            raise RuntimeError(f"subscribers never became live: {received}")
        n += 1
        await asyncio.to_thread(pub.post, f"ready-{n}")
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)  # let late probes land

    t0 = time.monotonic()
    for m in MESSAGES:
        await asyncio.to_thread(pub.post, m)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = [[m for m in r if not (isinstance(m, str) and m.startswith("ready-"))]
               for r in received]
        if all(len(g) >= len(MESSAGES) for g in got):
            break
        await asyncio.sleep(0.02)
    elapsed = time.monotonic() - t0
    await asyncio.sleep(0.5)  # anything extra would show up here

    got = []
    for r in received:
        # Only "ready-*" probes may come before the messages.
        i = 0
        while i < len(r) and isinstance(r[i], str) and r[i].startswith("ready-"):
            i += 1
        got.append(r[i:])
    bad = []
    for i, g in enumerate(got):
        if g != MESSAGES:
            short = [m if not isinstance(m, str) or len(m) < 40 else m[:20] + f"...({len(m)})"
                     for m in g]
            who = "raw" if i == len(subs) else f"sub{i}"
            bad.append(f"{who}: got {short}")

    for ws in subs:
        await ws.close()
    await raw.close()
    for t in tasks:
        t.cancel()

    statuses = sorted(set(pub.statuses))
    if bad:
        print(f"FAIL port={args.port} " + "; ".join(bad))
        return 1
    print(f"PASS port={args.port} subs={len(subs)}+1raw msgs={len(MESSAGES)} "
          f"probes={n} publish_status={statuses} "
          f"deflate={'accepted-unused' if raw.deflate else 'declined'} "
          f"delivered_in={elapsed * 1000:.0f}ms")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except Exception as e:  # noqa: BLE001 - report any failure as FAIL
        print(f"FAIL {type(e).__name__}: {e}")
        sys.exit(1)
