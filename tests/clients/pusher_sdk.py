#!/usr/bin/env python3
"""The official Python server SDK (PyPI `pusher`) against a Pusher-compatible server's HTTP API
on 127.0.0.1 without TLS: runs operations given as JSON, one after the other, and prints every
answer as one JSON line. The same ops and output as pusher-sdk.js, as far as the SDK goes.

  .venv/bin/python pusher_sdk.py --port N [--host 127.0.0.1] [--app-id ID --key K --secret S]
        [--timeout-s 30] [OP_JSON ...]      (no OP_JSON: one op per line from stdin until EOF)

Ops (the SDK method each one calls):
  {"op":"trigger","channel":"c"|"channels":[..],"event":"e","data":ANY[,"socket_id":"1.2"]}  trigger
  {"op":"batch","batch":[{"channel","name","data"[,"socket_id"]},..]}        trigger_batch
  {"op":"channels"[,"prefix":"presence-"][,"info":"user_count"]}             channels_info
  {"op":"channel","channel":"c"[,"info":"subscription_count,user_count"]}    channel_info
  {"op":"users","channel":"presence-c"}                                      users_info
  {"op":"send_to_user","user_id":"u","event":"e","data":ANY}                 send_to_user
  {"op":"terminate","user_id":"u"}                                           terminate_user_connections
  {"op":"webhook","key":K,"signature":S,"body":TEXT}                         validate_webhook (local)

Output: {"type":"answer","op":..,"status":200,"body":..} per op. The SDK returns the parsed body
on 200/202 (reported as status 200) and raises on the others: 400, 401 and 403 by exception
class, any other status from the exception text. {"type":"sdk_error","op":..,"error":..} when
the SDK refused before sending (its own checks) or no HTTP answer came; {"type":"done","ops":N}.
Known SDK quirk (3.3.4): terminate_user_connections posts to /users/{id}/terminate_connections,
without the /apps/{app_id} prefix the REST API documents.
Exit codes: 0 done, 2 bad arguments, 3 deadline.
"""
import argparse
import json
import os
import re
import sys
import threading
import time

import pusher
from pusher import errors

STARTED = time.monotonic()


def emit(kind, **fields):
    """Prints one observation as a JSON line."""
    line = {"t_ms": int((time.monotonic() - STARTED) * 1000), "type": kind}
    line.update({k: v for k, v in fields.items() if v is not None})
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def maybe_json(text):
    """`text` parsed as JSON when it is JSON, else unchanged."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def attributes(text):
    return [a for a in (text or "").split(",") if a]


def call(client, cmd):
    """The SDK call for one op; returns what the SDK returned."""
    op = cmd.get("op")
    if op == "trigger":
        return client.trigger(cmd.get("channels") or cmd["channel"], cmd["event"], cmd.get("data", {}),
                              socket_id=cmd.get("socket_id"))
    if op == "batch":
        return client.trigger_batch(cmd["batch"])
    if op == "channels":
        return client.channels_info(prefix_filter=cmd.get("prefix"), attributes=attributes(cmd.get("info")))
    if op == "channel":
        return client.channel_info(cmd["channel"], attributes=attributes(cmd.get("info")))
    if op == "users":
        return client.users_info(cmd["channel"])
    if op == "send_to_user":
        return client.send_to_user(cmd["user_id"], cmd["event"], cmd.get("data", {}))
    if op == "terminate":
        return client.terminate_user_connections(cmd["user_id"])
    if op == "webhook":
        return client.validate_webhook(cmd["key"], cmd["signature"], cmd["body"])
    raise KeyError(op)


STATUS_OF = {errors.PusherBadRequest: 400, errors.PusherBadAuth: 401, errors.PusherForbidden: 403}


def run(client, cmd):
    op = cmd.get("op")
    try:
        result = call(client, cmd)
    except KeyError as error:
        emit("bad_command", op=op, error=str(error))
        return False
    except tuple(STATUS_OF) as error:
        emit("answer", op=op, status=STATUS_OF[type(error)], body=maybe_json(str(error)))
        return True
    except errors.PusherBadStatus as error:
        match = re.match(r"^(\d{3}): (.*)$", str(error), re.S)
        if match:
            emit("answer", op=op, status=int(match.group(1)), body=maybe_json(match.group(2)))
        else:
            emit("sdk_error", op=op, error=str(error))
        return True
    except Exception as error:  # the SDK's own checks (ValueError, TypeError) and network errors
        emit("sdk_error", op=op, error=f"{type(error).__name__}: {error}")
        return True
    emit("answer", op=op, status=200, body=result)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app-id", default=os.environ.get("PUSHER_APP_ID", "1"))
    parser.add_argument("--key", default=os.environ.get("PUSHER_APP_KEY", "app-key"))
    parser.add_argument("--secret", default=os.environ.get("PUSHER_APP_SECRET", "app-secret"))
    parser.add_argument("--timeout-s", type=float, default=30.0)
    parser.add_argument("ops", nargs="*", help="one JSON op each")
    args = parser.parse_args()

    def expire():
        emit("timeout", after_ms=int(args.timeout_s * 1000))
        os._exit(3)

    timer = threading.Timer(args.timeout_s, expire)
    timer.daemon = True
    timer.start()
    client = pusher.Pusher(app_id=args.app_id, key=args.key, secret=args.secret, ssl=False,
                           host=args.host, port=args.port, timeout=10)
    count = 0
    # Bounded: by the arguments, or by the lines on stdin (ends at EOF).
    for text in (args.ops or sys.stdin):
        if not text.strip():
            continue
        try:
            cmd = json.loads(text)
        except ValueError as error:
            emit("bad_command", line=text[:200], error=str(error))
            continue
        count += 1 if run(client, cmd) else 0
    emit("done", ops=count)


if __name__ == "__main__":
    main()
