#!/usr/bin/env python3
"""Recovery storm: N clients reconnect at once and each recovers the same M missed messages.

Starts ringcast (one shard on --server-core, history on the storm's channel), publishes M
messages to the storm channel, then opens N `/ws/{channel}?since=S&epoch=E` connections at once
and measures:
  - time from the first connect to the last client holding all M messages (each checked: the
    exact sequence, in order, nothing missing, nothing twice);
  - the server's CPU seconds over the storm (from /proc/PID/stat);
  - the publish->receive latency (p50/p99/max) of a second channel's subscribers (no history)
    getting --probe-rate msg/s, before the storm and during it: what the storm costs others
    (they run in a process of their own, on the same client core).

The clients are Python (websockets + asyncio) on --client-core: with large N*M the client is the
bottleneck, so the time is an upper bound; the server CPU is the server's own cost.

  tests/clients/.venv/bin/python bench/recovery.py --bin target/release/ringcast \
      --clients 1000 --missed 1000 --out results/recovery

Binds 127.0.0.1 only; every phase has a timeout; the server is stopped at the end.
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import websockets


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="target/release/ringcast")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--missed", type=int, default=1000)
    parser.add_argument("--payload-bytes", type=int, default=64)
    parser.add_argument("--probe-subscribers", type=int, default=100)
    parser.add_argument("--probe-rate", type=float, default=20.0)
    parser.add_argument("--server-core", default="0")
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--out", default="")
    return parser.parse_args()


def start_server(args):
    command = [
        args.bin, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
        "--shards", "1", "--cores", args.server_core, "--log", "info",
        "--history", f"storm@{args.missed}/1h", "--history-memory", "256MiB",
        "--max-connections", "20000", "--outbound-queue-bytes", "4MiB",
    ]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    for line in server.stderr:
        match = re.search(r"listening on (\S+) \(api on ([^;) ]+)", line)
        if match:
            # Keep reading the log so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
            return server, match.group(1), match.group(2)
        if time.time() > deadline:
            break
    server.kill()
    sys.exit("ringcast did not start")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def publish(api, channel, body):
    request = urllib.request.Request(
        f"http://{api}/api/publish",
        data=json.dumps({"channel": channel, "data": body}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["result"]


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def probe_process(address, api, count, rate, stop, ready, results):
    """In its own process (so the storm's clients do not delay it): `count` subscribers of the
    probe channel record publish->receive latency (the payload is the send time) while a
    publisher sends `rate` msg/s; the (time, ms) pairs go to `results` once `stop` is set."""
    async def run():
        latencies, connected = [], []
        done = asyncio.Event()

        async def subscriber():
            async with websockets.connect(f"ws://{address}/ws/probe", max_queue=None) as socket:
                connected.append(1)
                while not done.is_set():
                    try:
                        message = await asyncio.wait_for(socket.recv(), 0.5)
                    except asyncio.TimeoutError:
                        continue
                    sent = json.loads(message)["t"]
                    latencies.append((time.time(), (time.time() - sent) * 1000))

        async def publisher():
            loop = asyncio.get_running_loop()
            while not done.is_set():
                await loop.run_in_executor(None, publish, api, "probe", {"t": time.time()})
                await asyncio.sleep(1 / rate)

        tasks = [asyncio.create_task(subscriber()) for _ in range(count)]
        while len(connected) < count:
            await asyncio.sleep(0.05)
        ready.set()
        sender = asyncio.create_task(publisher())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, stop.wait)
        done.set()
        await sender
        await asyncio.gather(*tasks, return_exceptions=True)
        return latencies

    results.put(asyncio.run(run()))


async def recover_one(address, since, epoch, expected_first, missed, done_at):
    url = f"ws://{address}/ws/storm?since={since}&epoch={epoch}"
    async with websockets.connect(url, max_queue=None, open_timeout=60) as socket:
        offset = int(socket.response.headers["Ringcast-Stream-Offset"])
        assert offset == since, (offset, since)
        for index in range(missed):
            message = json.loads(await socket.recv())
            assert message["n"] == expected_first + index, (message, expected_first + index)
        done_at.append(time.time())


async def main(args, server, address, api):
    pid = server.pid
    stop, ready, results = multiprocessing.Event(), multiprocessing.Event(), multiprocessing.Queue()
    prober = multiprocessing.Process(
        target=probe_process,
        args=(address, api, args.probe_subscribers, args.probe_rate, stop, ready, results),
        daemon=True)
    prober.start()
    if not ready.wait(30):
        prober.kill()
        sys.exit("the probe subscribers did not connect")
    await asyncio.sleep(5)
    baseline_end = time.time()
    # The messages the storm's clients missed.
    padding = "x" * max(0, args.payload_bytes - 20)
    first = publish(api, "storm", {"n": 0, "p": padding})
    since, epoch = first["offset"], first["epoch"]
    for n in range(1, args.missed + 1):
        publish(api, "storm", {"n": n, "p": padding})
    cpu_before = cpu_seconds(pid)
    started = time.time()
    done_at = []
    storm = [
        recover_one(address, since, epoch, 1, args.missed, done_at)
        for _ in range(args.clients)
    ]
    await asyncio.wait_for(asyncio.gather(*storm), args.timeout_s)
    finished = max(done_at)
    cpu_storm = cpu_seconds(pid) - cpu_before
    await asyncio.sleep(1)
    stop.set()
    latencies = results.get(timeout=30)
    prober.join(10)
    before = [ms for at, ms in latencies if at <= baseline_end]
    during = [ms for at, ms in latencies if started <= at <= finished + 0.2]
    return {
        "clients": args.clients,
        "missed_per_client": args.missed,
        "payload_bytes": args.payload_bytes,
        "messages_recovered": args.clients * args.missed,
        "time_to_all_recovered_s": round(finished - started, 3),
        "server_cpu_s": round(cpu_storm, 3),
        "server_cpu_us_per_recovered_message": round(cpu_storm * 1e6 / (args.clients * args.missed), 3),
        "probe_before_ms": {"n": len(before), "p50": percentile(before, 0.5), "p99": percentile(before, 0.99), "max": max(before, default=None)},
        "probe_during_ms": {"n": len(during), "p50": percentile(during, 0.5), "p99": percentile(during, 0.99), "max": max(during, default=None)},
    }


if __name__ == "__main__":
    args = parse_args()
    server, address, api = start_server(args)
    try:
        os.sched_setaffinity(0, {args.client_core})
    except OSError:
        pass
    try:
        result = asyncio.run(main(args, server, address, api))
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    result["command"] = " ".join(sys.argv)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "recovery.json"), "w") as out:
            out.write(text + "\n")
