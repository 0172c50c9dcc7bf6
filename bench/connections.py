#!/usr/bin/env python3
"""Memory per idle connection (not a test): starts the release binary, opens
N connections in one protocol state at a time and prints the RSS each costs,
for the memory budget in docs/limits.md. Loopback only; it stops by itself.

Usage: bench/connections.py [N] [BINARY]   (defaults: 2000, target/release/rum-pipeline)
Build first: cargo build --release --bin rum-pipeline
"""
import os
import socket
import shutil
import ssl
import subprocess
import sys
import tempfile
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
BIN = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "release", "rum-pipeline")
PORT = 3191
H2_OPENING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])

CONFIG = f"""
stats_interval_secs = 0
[http]
max_connections = {N + 100}
header_read_timeout_secs = 300
idle_timeout_secs = 300
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:{PORT}"
access_log = false
[sinks.out]
type = "blackhole"
inputs = ["beacons"]
"""


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    # An exited process (a zombie until waited for) has no VmRSS: a 0 here
    # would read as "0.0 KiB per connection".
    sys.exit(f"the server (pid {pid}) is not running: no RSS to measure")


def peer_closed(s):
    """Whether the server closed `s` (read under TLS too: the raw socket)."""
    try:
        return socket.socket.recv(s, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def port_open():
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
        return True
    except OSError:
        return False


def silent(s):
    return s


def partial_h1(s):
    s.sendall(b"POST /rum HTTP/1.1\r\nHost: x\r\n")
    return s


def keep_alive_h1(s):
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(4096)
    return s


def idle_h2c(s):
    s.sendall(H2_OPENING)
    s.recv(4096)
    return s


def run(config, states, tmp):
    path = os.path.join(tmp, "pipeline.toml")
    with open(path, "w") as f:
        f.write(config)
    # Another process on the port would answer the connections while ours
    # failed to bind, and its memory, not ours, would not be measured at all.
    if port_open():
        sys.exit(f"port {PORT} is in use (another server or benchmark?)")
    proc = subprocess.Popen([BIN, "--config", path], stderr=subprocess.DEVNULL,
                            env={**os.environ, "RUM_LOG": "warn"})
    try:
        for _ in range(100):
            if port_open() or proc.poll() is not None:
                break
            time.sleep(0.05)
        if proc.poll() is not None or not port_open():
            sys.exit(f"the server did not start (exit code {proc.poll()})")
        for name, opener in states:
            time.sleep(0.5)
            before = rss_kib(proc.pid)
            held = [opener(socket.create_connection(("127.0.0.1", PORT))) for _ in range(N)]
            time.sleep(1.0)
            after = rss_kib(proc.pid)
            # A connection the server closed costs it nothing: the figure
            # would read cheaper than an open one is.
            closed = sum(1 for s in held if peer_closed(s))
            if closed:
                sys.exit(f"{name}: the server closed {closed} of the {N} connections")
            print(f"  {name:36} RSS {before:7} -> {after:7} KiB: "
                  f"{(after - before) / N:5.1f} KiB per connection")
            for s in held:
                s.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def tls_idle(s):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context.wrap_socket(s)


def tls_keep_alive(s):
    return keep_alive_h1(tls_idle(s))


def main():
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"{N} connections each, binary {BIN}")
    with tempfile.TemporaryDirectory() as tmp:
        # A fresh process per state: freed memory is kept by the allocator and
        # would make the next state look cheaper.
        for state in [("silent (no byte)", silent),
                      ("partial HTTP/1 head", partial_h1),
                      ("HTTP/1 keep-alive after a request", keep_alive_h1),
                      ("h2c, no stream", idle_h2c)]:
            run(CONFIG, [state], tmp)
        if shutil.which("openssl"):
            crt, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                            "-subj", "/CN=localhost", "-keyout", key, "-out", crt],
                           check=True, capture_output=True)
            tls = CONFIG.replace('access_log = false',
                                 f'access_log = false\ntls = {{ crt_file = "{crt}", key_file = "{key}" }}')
            run(tls, [("TLS handshake done, nothing after", tls_idle)], tmp)
            run(tls, [("TLS + HTTP/1 keep-alive after a request", tls_keep_alive)], tmp)


if __name__ == "__main__":
    main()
