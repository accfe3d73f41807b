#!/usr/bin/env python3
"""Known-good reference WebSocket echo server (Python `websockets`).

Only used to validate the Autobahn tooling before ringcast exists.
Serves GET /echo (any other path gets HTTP 404), echoes every complete
message back unchanged (text stays text, binary stays binary), no
permessage-deflate, message limit 16 MiB + slack (for the 9.* cases).
"""

import argparse
import asyncio
import http
import signal

from websockets.asyncio.server import serve

MAX_MESSAGE = 16 * 1024 * 1024 + 1024


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except Exception:
        pass


def only_echo_path(connection, request):
    if request.path.split("?", 1)[0] != "/echo":
        return connection.respond(http.HTTPStatus.NOT_FOUND, "only /echo\n")
    return None


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9001)
    args = ap.parse_args()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        echo,
        args.host,
        args.port,
        process_request=only_echo_path,
        compression=None,
        max_size=MAX_MESSAGE,
        max_queue=None,
        ping_interval=None,
        server_header="reference-echo (python-websockets)",
    ):
        print(f"reference echo server on ws://{args.host}:{args.port}/echo", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
