#!/usr/bin/env python3
"""Memory of a burst of beacons that wait for room (not a test): starts the
binary with `rum_beacon -> stdout` and stdout into a pipe nobody reads, sends
beacons until the pipeline answers 503 (it is full), then sends N beacons of
EVENTS events each at once, on N connections, and samples the process's
RssAnon every 5 ms until every one is answered. Prints the peak over the
full pipeline's, per request, and what is left after. Loopback only.

Usage: bench/burst.py BINARY [N] [EVENTS]   (defaults: 320 connections, 300 events: 48.8 KB)
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 320
EVENTS = int(sys.argv[3]) if len(sys.argv) > 3 else 300
PORT = 3196

CONFIG = f"""
stats_interval_secs = 0
[http]
max_connections = {N + 100}
idle_timeout_secs = 300
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:{PORT}"
access_log = false
max_events_per_beacon = 500
[sinks.out]
type = "stdout"
inputs = ["beacons"]
"""

EVENT = {"type": "resource", "ts": 1763699999400, "name": "https://cdn.example.com/static/app.js",
         "initiator_type": "script", "duration": 81.2, "transfer_size": 48210}
BODY = json.dumps({"v": 1, "app": {"name": "shop"}, "session": {"id": "s1"},
                   "view": {"id": "v1", "url": "https://shop.example.com/"},
                   "sent_at": 1763700000000, "events": [EVENT] * EVENTS}).encode()
REQUEST = (b"POST /rum HTTP/1.1\r\nHost: bench\r\nContent-Type: text/plain\r\n"
           b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY


def status(sock):
    sock.settimeout(10)
    return sock.recv(100).split(b"\r\n")[0][9:12].decode()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "burst.toml")
        with open(config, "w") as f:
            f.write(CONFIG)
        fifo = os.path.join(tmp, "stalled")
        os.mkfifo(fifo)
        stalled = os.open(fifo, os.O_RDWR)  # held open, never read: the sink blocks
        server = subprocess.Popen([BIN, "--config", config], stdout=stalled,
                                  stderr=subprocess.DEVNULL)
        try:
            run(server.pid)
        finally:
            server.kill()
            server.wait()
            os.close(stalled)


def run(pid):
    def anon_kib():
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon"))

    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", PORT)).close()
            break
        except OSError:
            time.sleep(0.05)
    for _ in range(500):
        with socket.create_connection(("127.0.0.1", PORT)) as s:
            s.sendall(REQUEST)
            if status(s) == "503":
                break
    time.sleep(0.5)
    filled = anon_kib()
    peak = [filled]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], anon_kib())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    socks = [socket.create_connection(("127.0.0.1", PORT)) for _ in range(N)]
    for s in socks:
        s.sendall(REQUEST)
    answers = {}
    for s in socks:
        code = status(s)
        answers[code] = answers.get(code, 0) + 1
    time.sleep(0.3)
    done.set()
    sampler.join()
    print(f"body {len(BODY)} B, {N} requests, answers {answers}: RssAnon full pipeline "
          f"{filled} KiB, peak {peak[0]} KiB ({(peak[0] - filled) * 1024 / N:.0f} B per request), "
          f"after {anon_kib()} KiB")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
