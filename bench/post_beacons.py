#!/usr/bin/env python3
"""Sends exactly N beacons (testdata/beacons/realistic-10-events.json) to
POST /rum on one keep-alive connection, one at a time, and exits non-zero if
one is not answered 2xx. A fixed count, not a fixed time, so that a server run
under `valgrind --tool=callgrind` gives instructions per request:
(Ir with N=2000 - Ir with N=200) / 1800. See bench/instructions.sh.
Usage: bench/post_beacons.py N [PORT] [BODY_FILE]"""
import http.client
import sys

n = int(sys.argv[1])
port = int(sys.argv[2]) if len(sys.argv) > 2 else 3190
body = open(sys.argv[3] if len(sys.argv) > 3 else "testdata/beacons/realistic-10-events.json", "rb").read()
headers = {
    "Content-Type": "text/plain;charset=UTF-8",
    "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "X-Forwarded-For": "81.2.69.142",
}
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for i in range(n):
    conn.request("POST", "/rum", body, headers)
    r = conn.getresponse()
    r.read()
    if not 200 <= r.status < 300:
        sys.exit(f"request {i}: HTTP {r.status}")
conn.close()
