#!/usr/bin/env python3
"""centrifuge-python (PyPI `centrifuge-python`, the official Centrifugo Python SDK) against a
server speaking the Centrifugo bidirectional JSON protocol on 127.0.0.1: connects with a JWT,
subscribes, prints publications with their offsets and what the SDK says about recovery. The
same output lines as centrifuge-client.js.

  .venv/bin/python centrifuge_client.py --url ws://127.0.0.1:N/connection/websocket
        (--token JWT | --token-secret S [--user U] [--exp-s 3600] [--token-channels a,b] | --no-token)
        [--subscribe a,b] [--sub-token] [--recoverable] [--positioned]
        [--ignore-stdin] [--timeout-s 30]

The connection JWT is HS256 over {"sub":U,"exp":now+exp-s[,"channels":[..]]}; --sub-token adds a
subscription token per channel ({"sub":U,"channel":C,"exp":..}, same secret); --no-token connects
without a token. Recovery is the
SDK's: each subscription keeps its stream position and asks to recover from it when it
resubscribes after a reconnect (this SDK has no option to start from a given position).

Commands (stdin JSON lines; EOF = disconnect and exit 0 unless --ignore-stdin):
  {"op":"subscribe","channel":"c"}  {"op":"unsubscribe","channel":"c"}
  {"op":"drop"}  abort the WebSocket's TCP connection without a close frame (the SDK reconnects
                 by itself and recovers); uses the SDK's private `_conn` (websockets connection)
  {"op":"disconnect"}  {"op":"connect"}  {"op":"history","channel":"c"[,"limit":N]}
  {"op":"publish","channel":"c","data":..}  {"op":"exit"}

Output types: connecting, connected {client}, disconnected {code,reason}, error {code,message},
subscribing {channel,code,reason}, subscribed {channel,recoverable,positioned,was_recovering,
recovered,offset,epoch}, publication {channel,offset,data}, unsubscribed {channel,code,reason},
sub_error {channel,code,message}, history {channel,offset,epoch,publications}, published,
request_error {op,message}, dropped, closed, timeout. Exit codes: 0 done, 2 bad arguments,
3 deadline.
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time

from centrifuge import (Client, ClientEventHandler, StreamPosition, SubscriptionEventHandler)

STARTED = time.monotonic()


def emit(kind, **fields):
    """Prints one observation as a JSON line."""
    line = {"t_ms": int((time.monotonic() - STARTED) * 1000), "type": kind}
    line.update({k: v for k, v in fields.items() if v is not None})
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def jwt(claims, secret):
    """An HS256 JWT (RFC 7519) over `claims`."""
    def part(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    signed = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + part(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()
    return signed + "." + part(signature)


class ClientEvents(ClientEventHandler):
    """Prints the client's state changes."""

    async def on_connecting(self, ctx):
        emit("connecting", code=ctx.code, reason=ctx.reason)

    async def on_connected(self, ctx):
        emit("connected", client=ctx.client)

    async def on_disconnected(self, ctx):
        emit("disconnected", code=ctx.code, reason=ctx.reason)

    async def on_error(self, ctx):
        emit("error", code=ctx.code, message=str(ctx.error))


class SubscriptionEvents(SubscriptionEventHandler):
    """Prints one subscription's events."""

    def __init__(self, channel):
        self.channel = channel

    async def on_subscribing(self, ctx):
        emit("subscribing", channel=self.channel, code=ctx.code, reason=ctx.reason)

    async def on_subscribed(self, ctx):
        position = ctx.stream_position
        emit("subscribed", channel=self.channel, recoverable=ctx.recoverable, positioned=ctx.positioned,
             was_recovering=ctx.was_recovering, recovered=ctx.recovered,
             offset=position.offset if position else None, epoch=position.epoch if position else None)

    async def on_publication(self, ctx):
        emit("publication", channel=self.channel, offset=ctx.pub.offset, data=ctx.pub.data)

    async def on_unsubscribed(self, ctx):
        emit("unsubscribed", channel=self.channel, code=ctx.code, reason=ctx.reason)

    async def on_error(self, ctx):
        emit("sub_error", channel=self.channel, code=ctx.code, message=str(ctx.error))


class Runner:
    """The client, its subscriptions and the stdin commands."""

    def __init__(self, args):
        self.args = args
        claims = {"sub": args.user, "exp": int(time.time()) + args.exp_s}
        if args.token_channels:
            claims["channels"] = [c for c in args.token_channels.split(",") if c]
        token = "" if args.no_token else args.token or jwt(claims, args.token_secret)
        self.client = Client(args.url, events=ClientEvents(), token=token, name="ringcast-tests")
        self.done = asyncio.Event()

    async def subscribe(self, channel):
        if self.client.get_subscription(channel):
            return
        options = {"recoverable": self.args.recoverable, "positioned": self.args.positioned}
        if self.args.sub_token and self.args.token_secret:
            secret, user, exp_s = self.args.token_secret, self.args.user, self.args.exp_s

            async def get_token(name):
                return jwt({"sub": user, "channel": name, "exp": int(time.time()) + exp_s}, secret)
            options["get_token"] = get_token
        sub = self.client.new_subscription(channel, events=SubscriptionEvents(channel), **options)
        await sub.subscribe()

    async def command(self, cmd):
        op = cmd.get("op")
        if op == "subscribe":
            await self.subscribe(cmd["channel"])
        elif op == "unsubscribe":
            sub = self.client.get_subscription(cmd["channel"])
            if sub:
                await sub.unsubscribe()
                self.client.remove_subscription(sub)
        elif op == "drop":
            conn = getattr(self.client, "_conn", None)
            if conn is not None:
                conn.transport.abort()
            emit("dropped")
        elif op == "disconnect":
            await self.client.disconnect()
        elif op == "connect":
            await self.client.connect()
        elif op == "history":
            since = cmd.get("since")
            result = await self.client.history(
                cmd["channel"], limit=cmd.get("limit", 0),
                since=StreamPosition(offset=since["offset"], epoch=since["epoch"]) if since else None)
            emit("history", channel=cmd["channel"], offset=result.offset, epoch=result.epoch,
                 publications=[{"offset": p.offset, "data": p.data} for p in result.publications])
        elif op == "publish":
            await self.client.publish(cmd["channel"], cmd.get("data"))
            emit("published", channel=cmd["channel"])
        elif op == "exit":
            self.done.set()
        else:
            emit("bad_command", op=op)

    async def read_commands(self):
        loop = asyncio.get_running_loop()
        # Bounded: one step per stdin line; ends at EOF.
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            if not line.strip():
                continue
            try:
                cmd = json.loads(line)
            except ValueError as error:
                emit("bad_command", line=line[:200], error=str(error))
                continue
            try:
                await self.command(cmd)
            except Exception as error:  # the SDK's errors: reported, the client goes on
                emit("request_error", op=cmd.get("op"), message=f"{type(error).__name__}: {error}")
            if self.done.is_set():
                return
        self.done.set()

    async def run(self):
        for channel in [c for c in self.args.subscribe.split(",") if c]:
            await self.subscribe(channel)
        await self.client.connect()
        if not self.args.ignore_stdin:
            asyncio.get_running_loop().create_task(self.read_commands())
        try:
            await asyncio.wait_for(self.done.wait(), timeout=self.args.timeout_s)
        except asyncio.TimeoutError:
            await self.client.disconnect()
            emit("timeout", after_ms=int(self.args.timeout_s * 1000))
            return 3
        await self.client.disconnect()
        emit("closed")
        return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--token-secret", default="")
    parser.add_argument("--user", default="user-1")
    parser.add_argument("--exp-s", type=int, default=3600)
    parser.add_argument("--token-channels", default="")
    parser.add_argument("--no-token", action="store_true")
    parser.add_argument("--subscribe", default="")
    parser.add_argument("--sub-token", action="store_true")
    parser.add_argument("--recoverable", action="store_true")
    parser.add_argument("--positioned", action="store_true")
    parser.add_argument("--ignore-stdin", action="store_true")
    parser.add_argument("--timeout-s", type=float, default=30.0)
    args = parser.parse_args()
    if not (args.token or args.token_secret or args.no_token):
        parser.error("one of --token / --token-secret / --no-token is required")
    code = asyncio.run(Runner(args).run())
    sys.stdout.flush()
    # The stdin reader thread may still block in readline: leave without joining it.
    import os
    os._exit(code)


if __name__ == "__main__":
    main()
