#!/usr/bin/env python3
"""Seeded mutation fuzzer for the three intake endpoints (POST /rum,
POST /rum/report-uri, POST /rum/reporting-api) of the real binary.

Starts rum-pipeline ($RUM_PIPELINE_BIN, default target/debug/rum-pipeline)
with rum_beacon + csp on one loopback port, sends mutated requests over
http.client (well-framed HTTP/1.1, keep-alive) and raw sockets (framing,
header and request-line garbage, pipelining, split writes), and reports
requests, statuses, 5xx, connection errors, panics, process death and peak
RSS (VmHWM). Exits 1 on a 5xx other than 503 (and other than 501 for a
Transfer-Encoding that is not a single `chunked`, which is documented), a
panic, the process dying or not exiting cleanly on SIGTERM, /health not
answering at the end, or peak RSS above --max-rss-mib. Once the pipeline is
idle it also checks that /metrics accounts for every event (received = sent +
discarded in each component, each downstream received what its inputs sent,
the stdout sink wrote what it counts) and every document the stdout sink wrote
against the shipped index mapping (the ECS fields, each mapped field's type, no
field the mapping does not know).

Request i of seed S is generated from random.Random(S * 2**32 + i) alone, so
`--seed S --show i` prints it and `--seed S --only i` sends it again, whatever
the timing or the number of workers. Python 3 standard library only.

  bench/fuzz.py --seed 1 --requests 3000           # the short run of scripts/test.sh
  bench/fuzz.py --sdk --seed 3 --requests 20000    # the SDK intakes too (web_vitals, faro,
                                                   # elastic_apm_rum): other requests per seed
  bench/fuzz.py --seed 7 --seconds 600 --workers 8 # a long run by hand
  bench/fuzz.py --extended --seed 4                # targeted mutations (ECS-named and duplicate
                                                   # keys, depth limits, edge numbers) and GET /rum
See docs/testing.md#fuzzing.
"""

import argparse
import collections
import glob
import gzip
import http.client
import ipaddress
import json
import math
import os
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENDPOINTS = {
    "beacon": "/rum",
    "report-uri": "/rum/report-uri",
    "reporting-api": "/rum/reporting-api",
}
# `--sdk` adds the intakes of other SDKs. Off, the endpoint list and so every
# seed's requests stay what they were.
SDK_ENDPOINTS = {
    "web-vitals": "/rum/web-vitals",
    "faro": "/collect",
    "apm-v2": "/intake/v2/rum/events",
    "apm-v3": "/intake/v3/rum/events",
}
CONTENT_TYPES = {
    "web-vitals": [b"text/plain;charset=UTF-8", b"application/json"],
    "faro": [b"application/json", b"text/plain;charset=UTF-8"],
    "apm-v2": [b"application/x-ndjson", b"text/plain"],
    "apm-v3": [b"application/x-ndjson", b"text/plain"],
    "beacon": [b"text/plain;charset=UTF-8", b"application/json"],
    "report-uri": [b"application/csp-report", b"application/json"],
    "reporting-api": [b"application/reports+json", b"application/json"],
}
ODD_CONTENT_TYPES = [
    b"", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x",
    b"application/json; charset=utf-16", b"APPLICATION/JSON", b"text/plain; charset",
    b"application/csp-report", b"application/reports+json", b"text/html",
    b"application/json;;;;", b"*/*", b"application/" + b"x" * 5000, b"text/plain; q=\"",
]
MAX_BODY = 1048576  # rum_beacon / csp max_body_bytes default
AMPLIFY_LIMIT = 4 * MAX_BODY  # no mutation makes a body larger than about this
FUZZER_MAX_VM = 4 << 30       # address space of the fuzzer process itself
# A raw request the server has not answered after this long (framing it is still waiting on)
# is half-closed. The server answers a request it has read whole even after an EOF (half-closes
# are allowed), but an EOF inside a body ends the request: this must exceed the slowest answer
# of a loaded debug build.
QUIET_SECS = 3.0
QUIET = collections.Counter()

PIPELINE = """\
stats_interval_secs = 0
shutdown_timeout_secs = 10

[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:{port}"
path = "/rum"

[sources.reports]
type = "csp"
address = "127.0.0.1:{port}"
report_uri_path = "/rum/report-uri"
reporting_api_path = "/rum/reporting-api"
{sdk_sources}{transforms}
[sinks.out]
type = "{sink}"
inputs = [{inputs}]
"""
SDK_SOURCES = """
[sources.web_vitals]
type = "web_vitals"
address = "127.0.0.1:{port}"

[sources.faro]
type = "faro"
address = "127.0.0.1:{port}"

[sources.apm]
type = "elastic_apm_rum"
address = "127.0.0.1:{port}"
"""
TRANSFORMS = """
[transforms.ua]
type = "user_agent"
inputs = [{inputs}]

[transforms.scrub]
type = "scrub_url"
inputs = ["ua"]
routes = ["/product/{slug}", "/order/{id}"]

[sinks.metrics]
type = "prometheus"
inputs = ["scrub"]
dimensions = ["service.name", "url.path_template"]
budgets = { LCP = 2500 }
"""


# ---------------------------------------------------------------- seeds

def load_seeds(sdk=False):
    def files(pattern):
        out = []
        for path in sorted(glob.glob(os.path.join(ROOT, "testdata", pattern), recursive=True)):
            with open(path, "rb") as f:
                out.append(f.read())
        return out

    beacons = files("beacons/*.json")
    malformed = files("csp/malformed/*.json")
    seeds = {
        "beacon": beacons,
        "report-uri": files("csp/report-uri/*.json") + malformed,
        "reporting-api": files("csp/reporting-api/*.json") + malformed,
    }
    if not beacons or len(seeds["report-uri"]) == len(malformed):
        sys.exit("fuzz.py: no seeds under testdata/beacons and testdata/csp")
    if sdk:
        seeds["web-vitals"] = [b for b in files("sdk/web-vitals/*-[0-9].json")]
        seeds["faro"] = files("sdk/faro/body-*.json")
        seeds["apm-v2"] = files("sdk/elastic-apm-rum/v2-*.ndjson")
        seeds["apm-v3"] = files("sdk/elastic-apm-rum/v3-*.ndjson")
        for name in SDK_ENDPOINTS:
            if not seeds[name]:
                sys.exit(f"fuzz.py: no seeds for {name} under testdata/sdk")
        ENDPOINTS.update(SDK_ENDPOINTS)
    return seeds


# ---------------------------------------------------------------- body mutations

INVALID_UTF8 = [b"\xff", b"\xfe", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x90\x28\xbc",
                b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80"]
BAD_ESCAPES = [b"\\ud800", b"\\udc00\\ud800", b"\\u0000", b"\\x41", b"\\", b"\\uZZZZ", b"\\ud83d\\ude00",
               b"\\u00", b"\\/", b"\\\\\\"]
WEIRD_NUMBERS = [b"1e309", b"-1e309", b"1e-400", b"18446744073709551616", b"-9223372036854775809",
                 b"1E+2", b"-0", b"123456789012345678901234567890.5", b"NaN", b"Infinity", b"0x10",
                 b"01", b".5", b"5.", b"+1", b"-", b"1e", b"9" * 400, b"0." + b"0" * 400 + b"1"]
INTERESTING = b"\x00\xff\"{}[]\\,:0-.eE\x80\xc0\n\t "
STRING_SIZES = [0, 255, 256, 2048, 2049, 16383, 16384, 16385, 32767, 32768, 32769, 65536, 300000, 1048000]
NEST_DEPTHS = [15, 16, 17, 64, 100, 101, 1000, 50000, 500000]
STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*"')
NUMBER_RE = re.compile(rb'(?<=[:\[,])\s*-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?')


def pos(rng, data, end=True):
    return rng.randrange(len(data) + (1 if end else 0)) if data else 0


def random_value(rng, depth=0):
    kind = rng.randrange(10 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**53 + 1, 2**63, 2**64, -2**63, 1.5, -0.0, 1e300, 5e-324])
    if kind == 3:
        return "".join(chr(rng.choice([0x41, 0x7f, 0xe9, 0x4e2d, 0x1f600, 0xfeff, 0x200b, 0]))
                       for _ in range(rng.choice([0, 1, 5, 100])))
    if kind == 4:
        return rng.choice(["", "https://", "javascript:alert(1)", "data:,x", "//evil", "http://[::1",
                           "https://u:p@example.com:99999/a?b=c#d", "page_view", "web_vital", "LCP",
                           "csp-violation", "inline", "eval", "a" * 3000, "%00", "..\\..", "\u202e"])
    if kind == 5:
        return rng.choice([{}, [], [None], [[]], {"": ""}])
    if kind == 6:
        return str(rng.randrange(-10**6, 10**13))
    if kind in (7, 8):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["type", "ts", "name", "value", "url", "id", "body", "events", "x", ""]):
            random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def walk(node, path=()):
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + (i,))


def set_path(root, path, value):
    if not path:
        return value
    node = root
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return root


def m_struct(rng, body, ctx):
    """Parse as JSON, change one node (type, value, key, array length), serialize."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return m_flip(rng, body, ctx)
    nodes = list(walk(doc))
    path, node = rng.choice(nodes)
    op = rng.randrange(6)
    if op == 0:
        doc = set_path(doc, path, random_value(rng))
    elif op == 1 and isinstance(node, dict) and node:
        key = rng.choice(sorted(node))
        if rng.random() < 0.5:
            del node[key]
        else:
            node[rng.choice(["", "\u0000", "k" * 20000, "type", "é", key.upper()])] = node.pop(key)
    elif op == 2 and isinstance(node, list) and node:
        n = rng.choice([0, 1, 99, 100, 101, 499, 500, 501, 2000])
        n = min(n, len(node) * max(1, AMPLIFY_LIMIT // max(1, len(body))))
        node[:] = (node * (n // len(node) + 1))[:n]
    elif op == 3:
        doc = set_path(doc, path, [node] if rng.random() < 0.5 else {"v": node})
    elif op == 4 and isinstance(node, str):
        k = min(rng.choice([2, 100, 2000]), max(1, AMPLIFY_LIMIT // max(1, len(node) * 6)))
        doc = set_path(doc, path, rng.choice([0, 1.5, None, [], node * k]))
    elif op == 5 and isinstance(node, (int, float)) and not isinstance(node, bool):
        doc = set_path(doc, path, rng.choice([str(node), -node, float(node) * 1e300 if abs(node) < 1e8 else 1e300, 2**64, None]))
    else:
        doc = set_path(doc, path, random_value(rng))
    return json.dumps(doc, ensure_ascii=rng.random() < 0.5,
                      separators=rng.choice([(",", ":"), (", ", ": ")])).encode("utf-8", "surrogatepass")


def m_flip(rng, body, ctx):
    b = bytearray(body)
    for _ in range(rng.choice([1, 2, 4, 8, 32])):
        if b:
            b[pos(rng, b, False)] ^= 1 << rng.randrange(8)
    return bytes(b)


def m_interesting(rng, body, ctx):
    b = bytearray(body)
    for _ in range(rng.choice([1, 2, 3])):
        if b:
            b[pos(rng, b, False)] = rng.choice(INTERESTING)
    return bytes(b)


def m_truncate(rng, body, ctx):
    return body[:pos(rng, body)]


def m_duplicate(rng, body, ctx):
    if not body:
        return body
    a = pos(rng, body, False)
    b = min(len(body), a + rng.choice([1, 8, 64, 4096]))
    c = pos(rng, body)
    return body[:c] + body[a:b] * rng.choice([1, 2, 50]) + body[c:]


def m_splice(rng, body, ctx):
    pool = [s for seeds in ctx["seeds"].values() for s in seeds]
    other = rng.choice(pool)
    return body[:pos(rng, body)] + other[pos(rng, other):]


def m_nest(rng, body, ctx):
    depth = rng.choice(NEST_DEPTHS)
    opener = rng.choice([b"[", b'{"a":', b'{"events":[', b'{"body":'])
    closer = {b"[": b"]", b'{"a":': b"}", b'{"events":[': b"]}", b'{"body":': b"}"}[opener]
    depth = min(depth, (MAX_BODY + 4096) // len(opener))
    inner = opener * depth + b"1" + (closer * depth if rng.random() < 0.7 else b"")
    spots = [m.end() for m in re.finditer(rb":\s*", body[:20000])]
    at = rng.choice(spots) if spots else 0
    # replace the value at `at` up to the next , or } (roughly)
    m = re.compile(rb'[,}\]]').search(body, at)
    end = m.start() if m else len(body)
    return body[:at] + inner + body[end:]


def m_huge_string(rng, body, ctx):
    strings = list(STRING_RE.finditer(body[:50000]))
    n = rng.choice(STRING_SIZES)
    unit = rng.choice([b"A", "\u00e9".encode(), b"\\u00e9", b"\\\\", b"\\n", "\U0001f600".encode(), b"%"])
    content = (unit * (n // len(unit) + 1))[: max(n, 0)]
    if unit.startswith(b"\\"):
        content = content[: len(content) - len(content) % len(unit)]
    if not strings:
        return body + b'"' + content + b'"'
    s = rng.choice(strings)
    return body[:s.start()] + b'"' + content + b'"' + body[s.end():]


def m_num_as_string(rng, body, ctx):
    nums = list(NUMBER_RE.finditer(body))
    if not nums:
        return m_weird_number(rng, body, ctx)
    out, last = [], 0
    for m in nums:
        if rng.random() < 0.5:
            out += [body[last:m.start()], b'"' + m.group().strip() + b'"']
            last = m.end()
    out.append(body[last:])
    return b"".join(out)


def m_weird_number(rng, body, ctx):
    nums = list(NUMBER_RE.finditer(body))
    if not nums:
        return body + rng.choice(WEIRD_NUMBERS)
    m = rng.choice(nums)
    return body[:m.start()] + rng.choice(WEIRD_NUMBERS) + body[m.end():]


def m_invalid_utf8(rng, body, ctx):
    strings = list(STRING_RE.finditer(body[:50000]))
    at = rng.choice(strings).start() + 1 if strings and rng.random() < 0.8 else pos(rng, body)
    return body[:at] + rng.choice(INVALID_UTF8) * rng.choice([1, 1, 3]) + body[at:]


def m_bad_escape(rng, body, ctx):
    strings = list(STRING_RE.finditer(body[:50000]))
    at = rng.choice(strings).start() + 1 if strings else pos(rng, body)
    return body[:at] + rng.choice(BAD_ESCAPES) + body[at:]


def m_many_items(rng, body, ctx):
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return m_duplicate(rng, body, ctx)
    n = rng.choice([99, 100, 101, 499, 500, 501, 5000])
    n = min(n, max(1, AMPLIFY_LIMIT // max(1, len(body))))
    if isinstance(doc, dict) and isinstance(doc.get("events"), list) and doc["events"]:
        doc["events"] = (doc["events"] * (n // len(doc["events"]) + 1))[:n]
    elif isinstance(doc, list) and doc:
        doc = (doc * (n // len(doc) + 1))[:n]
    else:
        doc = [doc] * n
    return json.dumps(doc).encode()


def m_edge_body(rng, body, ctx):
    return rng.choice([b"", b" ", b"\xef\xbb\xbf" + body, b"null", b"[]", b"{}", b"0", b'"x"', b"[{}]",
                       body + b"\x00", body + b" trailing", body + body, b"\n" * 1000 + body,
                       b"{" * 3, b'{"v":1,"events":[]}', b'{"csp-report":{}}', b'{"csp-report":null}',
                       b'[{"type":"csp-violation","body":null}]'])


def m_padding(rng, body, ctx):
    target = rng.choice([MAX_BODY - 1, MAX_BODY, MAX_BODY + 1, 2 * MAX_BODY, 700000])
    pad = max(0, target - len(body))
    return (b" " * pad + body) if rng.random() < 0.5 else (body + b"\n" * pad)


def m_random(rng, body, ctx):
    n = rng.choice([1, 16, 300, 5000, 100000])
    return bytes(rng.getrandbits(8) for _ in range(min(n, 5000))) * max(1, n // 5000)


BODY_MUTATIONS = [  # (weight, function)
    (10, m_struct), (8, m_flip), (5, m_interesting), (5, m_truncate), (4, m_duplicate),
    (4, m_splice), (4, m_nest), (4, m_huge_string), (4, m_num_as_string), (3, m_weird_number),
    (5, m_invalid_utf8), (4, m_bad_escape), (3, m_many_items), (3, m_edge_body), (1, m_padding),
    (2, m_random),
]


def weighted(rng, items):
    total = sum(w for w, _ in items)
    r = rng.uniform(0, total)
    for w, item in items:
        r -= w
        if r <= 0:
            return item
    return items[-1][1]


# ---------------------------------------------------------------- --extended: targeted mutations
# Behind a flag, so that every seed of a run without it keeps producing the requests it always did.

class Pairs(list):
    """A JSON object as its (key, value) pairs in order, duplicates kept."""


def load_pairs(body):
    return json.loads(body, object_pairs_hook=Pairs)


def dump_pairs(node, rng):
    """JSON text of a Pairs tree; strings with lone surrogates are written as \\u escapes."""
    if isinstance(node, Pairs):
        return b"{" + b",".join(dump_pairs(k, rng) + b":" + dump_pairs(v, rng) for k, v in node) + b"}"
    if isinstance(node, list):
        return b"[" + b",".join(dump_pairs(v, rng) for v in node) + b"]"
    if isinstance(node, RawJson):
        return node.text
    if isinstance(node, float) and not math.isfinite(node):
        return b"1e400" if node > 0 else b"-1e400"  # what json.loads read as inf
    return json.dumps(node).encode()


class RawJson:
    """A value written as these exact bytes (a number Python cannot hold, an escape)."""

    def __init__(self, text):
        self.text = text


def containers(node, depth=1, path=()):
    """(node, depth, path) of every object and array; the root is at depth 1."""
    if isinstance(node, (Pairs, list)):
        yield node, depth, path
        items = node if isinstance(node, Pairs) else enumerate(node)
        for k, v in items:
            yield from containers(v, depth + 1, path + (k,))


# Keys that collide with document fields: ECS names dotted and nested, what a decoder puts
# labels and extras under, and names a key of JavaScript or Elasticsearch treats apart.
ECS_KEYS = ["@timestamp", "event.kind", "event", "event.dataset", "rum.type", "rum", "rum.extra", "labels",
            "labels.synthetic", "synthetic", "csp_noise", "client.ip", "client", "url.full", "url",
            "user_agent", "service.name", "_id", "_index", "_source", "__proto__", "constructor", "",
            ".", "..", "a.", ".a", "a..b", "*", "\"", "labels.x.y", "type", "seq", "ts", "\u0000", "é",
            "rum.seq", "session.id", "trace.id", "message", "error.message", "numeric_labels"]
NASTY_NUMBERS = [b"-0", b"-0.0", b"0e0", b"-0e-0", b"1e400", b"-1e400", b"1E400", b"1e-400", b"123e-20000",
                 b"9223372036854775807", b"9223372036854775808", b"-9223372036854775808",
                 b"-9223372036854775809", b"18446744073709551615", b"18446744073709551616",
                 b"9007199254740993", b"1.7976931348623157e308", b"1.7976931348623159e308", b"5e-324",
                 b"2.5e-324", b"1e19", b"-1e19", b"1e18", b"9.223372036854776e18", b"1.0", b"1e2", b"0.1e1",
                 b"100000000000000000000000.0", b"-1", b"4294967296", b"0.000001", b"1" + b"0" * 310]
NASTY_STRINGS = [b'"\\ud800"', b'"\\udfff"', b'"a\\ud800"', b'"\\ud800a"', b'"\\udc00\\ud800"',
                 b'"\\ud800\\u0041"', b'"\\ud83d\\ude00"', b'"\\u0000"', b'"a\\u0000b"', b'"\\u001f"',
                 b'"\\uD800\\uDBFF"', b'"\\ud800\\\\"', b'"\\uFFFF"', b'"\\uFEFF"', b'"\\u2028\\u2029"',
                 b'"\xc0\x80"', b'"\xe0\x80\x80"', b'"\xf0\x80\x80\x80"', b'"\xed\xa0\x80"', b'"\xed\xbf\xbf"',
                 b'"\xf4\x90\x80\x80"', b'"a\x00b"', b'"\x00"', b'"\x7f"', b'"\xef\xbf\xbe"',
                 b'"' + "\u00e9".encode() * 8192 + b'"', b'"' + b"\\ud83d\\ude00" * 1366 + b'"',
                 b'"' + b"\\u00e9" * 5462 + b'"']


def parse_pairs(rng, body):
    """(the body as a Pairs tree, a function that writes a tree back as the body), or
    (None, None). An NDJSON body (the APM intakes) is one of its lines, the others kept."""
    try:
        return load_pairs(body), lambda doc: dump_pairs(doc, rng)
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    lines = body.split(b"\n")
    if len(lines) > 1:
        at = rng.randrange(len(lines))
        try:
            doc = load_pairs(lines[at])
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None, None
        return doc, lambda doc: b"\n".join(lines[:at] + [dump_pairs(doc, rng)] + lines[at + 1:])
    return None, None


def x_ecs_keys(rng, body, ctx):
    """Keys named like document fields, in any object (labels, tags, extras, events)."""
    doc, put = parse_pairs(rng, body)
    if doc is None:
        return m_flip(rng, body, ctx)
    objects = [n for n, _, _ in containers(doc) if isinstance(n, Pairs)]
    if not objects:
        return body
    for _ in range(rng.choice([1, 1, 2, 5])):
        obj = rng.choice(objects)
        key = rng.choice(ECS_KEYS)
        value = rng.choice(["x", "no", "true", 1, -1.5, True, False, None, {"kind": "alert"}, [1, "a"],
                            RawJson(rng.choice(NASTY_NUMBERS)), RawJson(rng.choice(NASTY_STRINGS)),
                            {"synthetic": "no", "x.y": 1}])
        obj.insert(rng.randrange(len(obj) + 1), (key, value))
    return put(doc)


def x_duplicate_keys(rng, body, ctx):
    """A key twice in one object, with another value (and type) the second time."""
    doc, put = parse_pairs(rng, body)
    if doc is None:
        return m_duplicate(rng, body, ctx)
    objects = [n for n, _, _ in containers(doc) if isinstance(n, Pairs) and n]
    for _ in range(rng.choice([1, 2, 3])):
        if not objects:
            break
        obj = rng.choice(objects)
        key, value = rng.choice(obj)
        other = rng.choice([None, "dup", 0, 2**70, {"a": 1}, [value], value, True, RawJson(b"1e400")])
        obj.insert(rng.randrange(len(obj) + 1), (key, other))
    return put(doc)


def x_exact_depth(rng, body, ctx):
    """A value nested so that the body is exactly max_json_depth (16) deep, or one past."""
    doc, put = parse_pairs(rng, body)
    if doc is None:
        return m_nest(rng, body, ctx)
    spots = list(containers(doc))
    if not spots:
        return body
    node, depth, _ = rng.choice(spots)
    total = rng.choice([15, 16, 16, 17, 17, 20, 21, 101])
    levels = max(0, total - depth)
    value = RawJson(rng.choice([b"1", b'"x"', b"{}", b"[]", b"null"]))
    for _ in range(levels - 1 if levels else 0):
        value = Pairs([(rng.choice(["a", "attribution", "x"]), value)]) if rng.random() < 0.5 else [value]
    if isinstance(node, Pairs):
        node.append((rng.choice(["deep", "attribution", "data", "context"]), value))
    else:
        node.append(value)
    return put(doc)


def x_nasty_value(rng, body, ctx):
    """Values replaced by numbers and strings at the edges of what JSON and its readers hold."""
    doc, put = parse_pairs(rng, body)
    if doc is None:
        return m_weird_number(rng, body, ctx)
    slots = []
    for node, _, _ in containers(doc):
        if isinstance(node, Pairs):
            slots += [(node, i) for i in range(len(node))]
        else:
            slots += [(node, i) for i in range(len(node))]
    for _ in range(rng.choice([1, 2, 4, 16])):
        if not slots:
            break
        node, i = rng.choice(slots)
        value = RawJson(rng.choice(NASTY_NUMBERS) if rng.random() < 0.5 else rng.choice(NASTY_STRINGS))
        if isinstance(node, Pairs):
            node[i] = (node[i][0], value)
        else:
            node[i] = value
    return put(doc)


WRONG_TYPES = [None, True, "1", "", 0, -1, 1.5, [], {}, [1], {"a": 1}, RawJson(b"1e400"), RawJson(b"-0")]


def x_wrong_types(rng, body, ctx):
    """Every value of one object (an event, a report, the context) of another JSON type."""
    doc, put = parse_pairs(rng, body)
    if doc is None:
        return m_struct(rng, body, ctx)
    objects = [n for n, _, _ in containers(doc) if isinstance(n, Pairs) and n]
    if not objects:
        return body
    obj = rng.choice(objects)
    shift = rng.randrange(len(WRONG_TYPES))
    for i, (k, v) in enumerate(obj):
        if k in ("type", "v") and rng.random() < 0.7:
            continue  # mostly keep what makes it an event of its kind, so the rest is read
        obj[i] = (k, WRONG_TYPES[(i + shift) % len(WRONG_TYPES)])
    return put(doc)


def x_many_tiny(rng, body, ctx):
    """As many of the smallest items as allowed, and one more (beacon events, reports, metrics)."""
    n = rng.choice([50, 51, 500, 501, 1000, 20000])
    endpoint = ctx["endpoint"]
    if endpoint == "beacon":
        item = rng.choice([b'{"type":"x"}', b'{"type":"page_view"}', b'{"type":""}', b'{"type":"custom","seq":1}'])
        return b'{"v":1,"events":[' + b",".join([item] * n) + b"]}"
    if endpoint in ("report-uri", "reporting-api"):
        item = rng.choice([b'{"type":"csp-violation","body":{}}', b"{}", b'{"type":"x","body":{"a":1}}'])
        return b"[" + b",".join([item] * n) + b"]"
    if endpoint == "web-vitals":
        return b"[" + b",".join([b'{"name":"LCP","value":1}'] * n) + b"]"
    if endpoint == "faro":
        return b'{"meta":{},"measurements":[' + b",".join([b'{"type":"x","values":{"a":1}}'] * n) + b"]}"
    lines = body.split(b"\n", 1)
    return lines[0] + b"\n" + b"\n".join([b'{"error":{"id":"e","exception":{"message":"m"}}}'] * n) + b"\n"


EXTENDED_MUTATIONS = [
    (6, x_ecs_keys), (5, x_duplicate_keys), (4, x_exact_depth), (6, x_nasty_value), (5, x_wrong_types),
    (2, x_many_tiny),
]



CLIENT_BUNDLE = os.path.join(ROOT, "client-js/dist/rum.min.js")
ACCEPT_ENCODINGS = [  # (value, whether the answer must be gzip: True, False or None for either)
    (None, False), (b"gzip", True), (b"gzip, deflate, br, zstd", True), (b"gzip;q=0", False),
    (b"identity", False), (b"br", False), (b"*", True), (b"*;q=0", False), (b"gzip;q=0, *", False),
    (b"GZIP", True), (b"gzip;q=0.001", True), (b"gzip;q=1.5", None), (b"gzip;q=NaN", None),
    (b"gzip;q=", None), (b";;;,,,", False), (b"x-gzip", None), (b"gzip;level=9", True),
    (b"deflate;q=1, gzip;q=0", False), (b"\xff", None), (b"gzip" + b", x" * 2000, True),
]


def client_request(rng, req):
    """GET or HEAD of the RUM client script with odd Accept-Encoding and If-None-Match,
    checked by check_client_answer."""
    req.mode = "client"
    req.method = rng.choice(["GET", "GET", "GET", "HEAD"])
    req.target = rng.choice(["/rum", "/rum", "/rum?v=1.0.0", "/rum?" + "x" * 3000])
    req.body = b""
    req.headers = []
    value, gzip_wanted = rng.choice(ACCEPT_ENCODINGS)
    if value is not None and not re.search(rb"[\x00-\x1f\x7f-\xff]", value):
        req.headers.append((b"Accept-Encoding", value))
    else:
        gzip_wanted = False if value is None else None
    inm = rng.choice([None, None, b"*", b'"nope"', b'W/"nope"', b'"nope", *', b"", b",,,", b'"' + b"x" * 5000 + b'"'])
    if inm is not None:
        req.headers.append((b"If-None-Match", inm))
    if rng.random() < 0.2:
        req.headers.append((b"Range", rng.choice([b"bytes=0-10", b"bytes=-1", b"bytes=99999999-", b"lines=1"])))
    req.ops.append(f"client:{req.method} ae={value!r} inm={inm!r}")
    req.check = lambda status, headers, body: check_client_answer(req.method, gzip_wanted, inm, status, headers, body)
    return req


def check_client_answer(method, gzip_wanted, inm, status, headers, body):
    """What is wrong with an answer to a GET or HEAD of the client script, or None."""
    with open(CLIENT_BUNDLE, "rb") as f:
        script = f.read()
    header = {k.lower(): v for k, v in headers}
    coding = header.get("content-encoding")
    if status == 304:
        return None if inm is not None and b"*" in inm else f"304 to If-None-Match {inm!r}"
    if status != 200:
        return f"status {status}"
    if gzip_wanted is not None and (coding == "gzip") != gzip_wanted:
        return f"Content-Encoding {coding!r}, expected {'gzip' if gzip_wanted else 'none'}"
    if not header.get("content-type", "").startswith("application/javascript"):
        return f"Content-Type {header.get('content-type')!r}"
    if "etag" not in header or header.get("vary", "").lower() != "accept-encoding":
        return "no ETag or Vary: Accept-Encoding"
    if method == "HEAD":
        return None if not body else f"HEAD answered with a {len(body)}-byte body"
    try:
        plain = gzip.decompress(body) if coding == "gzip" else body
    except (OSError, EOFError) as e:
        return f"gzip body does not inflate: {e}"
    return None if plain == script else f"body of {len(plain)} bytes is not the {len(script)}-byte script"

# ---------------------------------------------------------------- encodings

_BOMBS = {}


def bomb(kind):
    """Small compressed bodies that inflate to about or past the 1 MiB limit (computed once)."""
    if kind not in _BOMBS:
        plain = {
            "zeros": b"\0" * (16 * MAX_BODY),
            "spaces-over": b" " * (MAX_BODY + 1),
            "nesting": b"[" * (MAX_BODY - 10),
            "events": b'{"v":1,"session":{"id":"s"},"view":{"id":"v","url":"https://x.example/"},"events":['
                      + b",".join([b'{"type":"page_view","ts":1}'] * 30000) + b"]}",
            "reports": b"[" + b",".join([b'{"type":"csp-violation","body":{"blockedURL":"inline"}}'] * 15000) + b"]",
        }[kind]
        _BOMBS[kind] = gzip.compress(plain, 9, mtime=0)
    return _BOMBS[kind]


def encode(rng, body):
    """(Content-Encoding value or None, body on the wire, op name)."""
    r = rng.random()
    if r < 0.72:
        return None, body, None
    kind = rng.choice(["gzip", "gzip", "deflate", "raw-deflate", "gzip-garbage", "gzip-truncated",
                       "bomb", "double-gzip", "unknown", "list", "empty", "upper", "gzip-trailing"])
    if kind == "gzip":
        return b"gzip", gzip.compress(body, 6, mtime=0), kind
    if kind == "deflate":
        return b"deflate", zlib.compress(body), kind
    if kind == "raw-deflate":
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return b"deflate", c.compress(body) + c.flush(), kind
    if kind == "gzip-garbage":
        return rng.choice([b"gzip", b"x-gzip", b"deflate"]), bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 10, 500]))), kind
    if kind == "gzip-truncated":
        g = gzip.compress(body, 6, mtime=0)
        return b"gzip", g[:pos(rng, g)], kind
    if kind == "bomb":
        which = rng.choice(["zeros", "spaces-over", "nesting", "events", "reports"])
        return b"gzip", bomb(which), "bomb-" + which
    if kind == "double-gzip":
        return rng.choice([b"gzip", b"gzip, gzip"]), gzip.compress(gzip.compress(body, mtime=0), mtime=0), kind
    if kind == "gzip-trailing":
        return b"gzip", gzip.compress(body, mtime=0) + rng.choice([b"\0", b"garbage", gzip.compress(b"{}", mtime=0)]), kind
    value = {"unknown": rng.choice([b"br", b"zstd", b"compress", b"identity", b"\xff\xfe"]),
             "list": rng.choice([b"gzip, deflate", b"identity, gzip", b"gzip,"]),
             "empty": b"", "upper": b"GZIP"}[kind]
    wire = gzip.compress(body, mtime=0) if kind == "upper" else body
    return value, wire, kind


# ---------------------------------------------------------------- requests

class Request:
    def __init__(self):
        self.endpoint = ""
        self.mode = "client"     # "client" (http.client) or "raw" (socket)
        self.method = "POST"
        self.target = "/"
        self.headers = []        # [(bytes, bytes)]
        self.body = b""
        self.raw = b""           # raw mode: everything sent
        self.pieces = 1          # raw mode: split the send into this many writes
        self.shut_wr = False     # raw mode: half-close after sending (incomplete framing)
        self.expect = 1          # raw mode: responses to wait for
        self.allow_501 = False   # an odd Transfer-Encoding was sent: 501 is the documented answer
        self.problem = None      # what check found wrong
        self.check = None        # client mode: (status, headers, body) -> what is wrong, or None
        self.ops = []

    def describe(self):
        return f"{self.mode} {self.method} {self.target} [{', '.join(self.ops)}] body={len(self.body)}B"

    def as_bytes(self):
        if self.mode == "raw":
            return self.raw
        head = f"{self.method} {self.target} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        head += b"".join(k + b": " + v + b"\r\n" for k, v in self.headers)
        head += b"Content-Length: %d\r\n\r\n" % len(self.body)
        return head + self.body


HEADER_GARBAGE = [
    b"Foo Bar: x", b"Foo:: x", b":authority: x", b"\x00: y", b"X-A: \x00\x01\x7f\xff", b"NoColon",
    b" folded: continuation", b"X-Folded: a\r\n  b", b"X-Empty:", b": empty-name", b"X-Utf8: \xc3\xa9\xff",
    b"Expect: 100-continue", b"Expect: garbage", b"Connection: close", b"Connection: keep-alive, Upgrade",
    b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABkAAQAAP__", b"Upgrade: websocket",
    b"X-Forwarded-For: , ,,unknown, 999.1.1.1, ::ffff:1.2.3.4, [::1]:80",
    b"X-Forwarded-For: " + b"1.2.3.4, " * 2000, b"Forwarded: for=\"[::1\";proto=http;by=_x",
    b"Forwarded: for=unknown, for=1.2.3.4:99999", b"Origin: null", b"Origin: https://\xff.example",
    b"Origin: " + b"a" * 10000, b"Sec-CH-UA: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"",
    b"Sec-CH-UA: \"\";v=\";;\", ,,\"", b"Sec-CH-UA-Platform: \"" + b"W" * 5000, b"Sec-CH-UA-Mobile: ?2",
    b"Sec-CH-UA-Full-Version-List: \"" + b"x\\\"" * 3000, b"Content-Type: application/json",
    b"Content-Encoding: gzip", b"Host: a", b"Host: ", b"Cookie: " + b"c=" * 30000,
    b"Accept-Encoding: gzip;q=\xff", b"Referer: javascript:alert(1)", b"Transfer-Encoding:",
]
USER_AGENTS = [
    b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    b"", b"curl/8.5.0", b"Googlebot/2.1 (+http://www.google.com/bot.html)", b"\xff\xfe\xfd",
    b"Mozilla/5.0 " + b"(" * 3000, b"Mozilla/5.0 (" + b"a; " * 700 + b")", b"A" * 2049, b"A" * 60000,
    b"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) " + b"Version/" + b"9" * 500,
]
TARGETS = {
    "beacon": [b"/rum", b"/rum?x=1", b"/rum/", b"//rum", b"/RUM", b"/rum%00", b"/rum#f",
               b"http://127.0.0.1/rum", b"/rum?" + b"q=" * 4000, b"*", b"/rum/../rum"],
    "report-uri": [b"/rum/report-uri", b"/rum/report-uri?a=%ff", b"/rum/report-uri/", b"/rum/report-uri;x"],
    "reporting-api": [b"/rum/reporting-api", b"/rum/reporting-api?", b"/rum/reporting-api%2f",
                      b"http://[::1]/rum/reporting-api"],
    "web-vitals": [b"/rum/web-vitals", b"/rum/web-vitals?x", b"/rum/web-vitals/"],
    "faro": [b"/collect", b"/collect/app-key", b"/collect/a/b", b"/collect/", b"/collect/%2e%2e",
             b"/collect/" + b"k" * 5000],
    "apm-v2": [b"/intake/v2/rum/events", b"/intake/v2/rum/events?x=1", b"/config/v1/rum/agents",
               b"/config/v1/rum/agents?service.name=x&ifnonematch=%22x%22"],
    "apm-v3": [b"/intake/v3/rum/events", b"/intake/v3/rum/events/", b"/intake/v3/rum/events;x"],
}
OTHER_TARGETS = [b"/health", b"/metrics", b"/metrics/rum", b"/", b"/rum"]


def generate(seed, i, seeds, extended=False):
    rng = random.Random(seed * 2**32 + i)
    req = Request()
    req.endpoint = rng.choice(list(ENDPOINTS))
    ctx = {"seeds": seeds, "endpoint": req.endpoint}
    if extended and req.endpoint == "beacon" and rng.random() < 0.1:
        return client_request(rng, req)
    mutations = BODY_MUTATIONS + EXTENDED_MUTATIONS if extended else BODY_MUTATIONS
    own = seeds[req.endpoint]
    body = rng.choice(own)
    if rng.random() < 0.05:  # a body meant for another endpoint
        body = rng.choice(seeds[rng.choice(list(ENDPOINTS))])
        req.ops.append("foreign-seed")
    if rng.random() < 0.9:
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
            mutate = weighted(rng, mutations)
            try:
                body = mutate(rng, body, ctx)
            except (RecursionError, ValueError, OverflowError):
                body = m_flip(rng, body, ctx)
            req.ops.append(mutate.__name__[2:])
            if len(body) > 3 * MAX_BODY:
                body = body[: 3 * MAX_BODY]
    else:
        req.ops.append("unmutated")

    headers = []
    if rng.random() < 0.85:
        ct = rng.choice(CONTENT_TYPES[req.endpoint]) if rng.random() < 0.8 else rng.choice(ODD_CONTENT_TYPES)
        headers.append((b"Content-Type", ct))
    else:
        req.ops.append("no-content-type")
    ce, wire, op = encode(rng, body)
    if ce is not None:
        headers.append((b"Content-Encoding", ce))
    if op:
        req.ops.append("ce:" + op)
    if rng.random() < 0.7:
        headers.append((b"User-Agent", rng.choice(USER_AGENTS)))
    if rng.random() < 0.3:
        headers.append((b"Origin", rng.choice([b"https://shop.example.com", b"null", b"http://evil.example"])))
    req.body = wire
    req.method = "POST"
    req.target = ENDPOINTS[req.endpoint]

    if rng.random() < 0.55:
        # Well-framed: http.client (it refuses control bytes in headers, so only printable ones).
        req.mode = "client"
        req.headers = [(k, v) for k, v in headers if not re.search(rb"[\x00-\x1f\x7f]", v)]
        if rng.random() < 0.1:
            req.method = rng.choice(["GET", "PUT", "OPTIONS", "HEAD", "DELETE"])
            req.ops.append("method:" + req.method)
            if req.method == "OPTIONS":
                req.headers.append((b"Access-Control-Request-Method", rng.choice([b"POST", b"PATCH", b""])))
                req.headers.append((b"Access-Control-Request-Headers", rng.choice([b"content-type", b"x-" * 100])))
                if rng.random() < 0.3:
                    req.target = rng.choice(OTHER_TARGETS).decode()
        return req

    # Raw socket: request line, headers and framing garbage.
    req.mode = "raw"
    method = b"POST"
    target = rng.choice(TARGETS[req.endpoint]) if rng.random() < 0.2 else req.target.encode()
    version = b"HTTP/1.1"
    if rng.random() < 0.15:
        which = rng.randrange(3)
        if which == 0:
            method = rng.choice([b"post", b"GET", b"PUT", b"OPTIONS", b"PO\x00ST", b"POST ", b"", b"X" * 100])
        elif which == 1:
            version = rng.choice([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9.9", b"HTTP/1.1 x", b"http/1.1", b"", b"HTTP/1.1\r"])
        else:
            target = rng.choice([b"", b" ", b"/rum\x00", b"/\xff", b"/" + b"a" * 70000])
        req.ops.append("request-line")
    req.method, req.target = method.decode("latin-1"), target.decode("latin-1")
    if rng.random() > 0.03:
        headers.insert(0, (b"Host", b"127.0.0.1"))
    else:
        req.ops.append("no-host")
    lines = [k + b": " + v for k, v in headers]
    eol = b"\r\n"
    if rng.random() < 0.25:
        for _ in range(rng.choice([1, 1, 2, 5])):
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(HEADER_GARBAGE))
        req.ops.append("header-garbage")
    if rng.random() < 0.03:
        lines += [b"X-Many-%d: v" % n for n in range(rng.choice([100, 128, 129, 1000]))]
        req.ops.append("many-headers")
    if rng.random() < 0.03:
        lines.append(b"X-Big: " + b"b" * rng.choice([8000, 60000, 65536, 70000]))
        req.ops.append("big-header")
    if rng.random() < 0.03:
        eol = b"\n"
        req.ops.append("lf-only")

    # Framing.
    framing = weighted(rng, [(40, "length"), (25, "chunked"), (6, "cl-short"), (5, "cl-long"), (4, "cl-huge"),
                             (4, "cl-bad"), (4, "te-and-cl"), (6, "te-odd"), (2, "none"), (2, "h2-preface")])
    req.ops.append("framing:" + framing)
    body = req.body
    if framing == "length":
        lines.append(b"Content-Length: %d" % len(body))
    elif framing == "cl-short":  # declared more than sent
        lines.append(b"Content-Length: %d" % (len(body) + rng.choice([1, 10, 4096])))
        req.shut_wr = True
    elif framing == "cl-long":  # declared less than sent: the rest is the next "request"
        cut = pos(rng, body)
        lines.append(b"Content-Length: %d" % cut)
        req.expect = 2 if cut < len(body) else 1
    elif framing == "cl-huge":
        lines.append(b"Content-Length: " + rng.choice([b"10485760", b"1048577", b"4294967296", b"9223372036854775807",
                                                       b"18446744073709551616", b"9" * 40]))
        req.shut_wr = True
    elif framing == "cl-bad":
        value = rng.choice([b"-1", b"abc", b"1,1", b" %d " % len(body), b"+%d" % len(body), b"0x10", b"",
                            b"%d, %d" % (len(body), len(body)), b"%d" % len(body) + b"\x00"])
        lines.append(b"Content-Length: " + value)
        if rng.random() < 0.3:
            lines.append(b"Content-Length: %d" % (len(body) + rng.choice([0, 1])))
        # No half-close: some of these values are valid, and an EOF inside a declared body
        # ends the request; the quiet timer closes.
    elif framing in ("chunked", "te-and-cl", "te-odd"):
        te = b"chunked"
        if framing == "te-odd":
            te = rng.choice([b"gzip, chunked", b"chunked, chunked", b"identity", b"Chunked", b" chunked ",
                             b"chunked;q=1", b"xchunked", b"chunked, gzip", b"deflate", b"\xffchunked", b"chunked,"])
        lines.append(b"Transfer-Encoding: " + te)
        if framing == "te-and-cl":
            lines.append(b"Content-Length: %d" % len(body))
        lines_te = [v.strip().lower() for v in te.split(b",") if v.strip()]
        req.allow_501 = lines_te != [b"chunked"]
        body, complete = chunk(rng, body, req)
        req.shut_wr = not complete
    elif framing == "none":
        # Without framing the request has no body: with none sent it is complete and is
        # answered; with one, what follows is the next request, cut short by the half-close.
        req.shut_wr = bool(body)
    if framing == "h2-preface":
        req.raw = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + rng.choice([b"", b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", body[:100]])
        req.shut_wr = True
        req.expect = 0
    else:
        head = method + b" " + target + b" " + version + eol + eol.join(lines) + eol + eol
        req.raw = head + body
        if rng.random() < 0.08:  # pipelining: another (unmutated) request behind it
            other = rng.choice(list(ENDPOINTS))
            extra = rng.choice(seeds[other])
            req.raw += (b"POST " + ENDPOINTS[other].encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                        % len(extra) + extra)
            req.expect += 1
            req.ops.append("pipelined")
    if rng.random() < 0.1:
        req.pieces = rng.choice([2, 3, 7, 30])
        req.ops.append(f"split:{req.pieces}")
    req.body = body
    return req


def chunk(rng, body, req):
    """Chunked encoding with oddities; returns (bytes, complete)."""
    out, i, complete = [], 0, True
    odd = rng.random() < 0.35
    while i < len(body):
        n = rng.choice([1, 7, 100, 4096, 65536, 1 << 20])
        part = body[i:i + n]
        size = b"%x" % len(part)
        if odd:
            size = rng.choice([size, size.upper(), b"000" + size, size + b";ext=1", size + b" ", size + b";" + b"e" * 5000])
        out.append(size + b"\r\n" + part + b"\r\n")
        i += n
    last = b"0\r\n\r\n"
    if odd:
        trick = rng.randrange(8)
        if trick == 0:
            last = b"0\r\nX-Trailer: 1\r\n\r\n"
        elif trick == 1:
            last, complete = b"", False
        elif trick == 2:
            out.append(b"zz\r\nxx\r\n")
        elif trick == 3:
            out.append(b"fffffffffffffffff1\r\n")
            complete = False
        elif trick == 4:
            out.append(b"10\r\nshort\r\n")
            complete = False
        elif trick == 5:
            last = b"0\n\n"
        elif trick == 6:
            out.insert(0, b"-1\r\n")
        else:
            last = b"0\r\n" + b"T: " + b"t" * 70000 + b"\r\n\r\n"
        req.ops.append(f"chunk-trick:{trick}")
    return b"".join(out) + last, complete


# ---------------------------------------------------------------- sending

def parse_responses(buf):
    """Statuses of the complete HTTP/1 responses at the start of buf, and what is left."""
    statuses = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return statuses, buf
        head = buf[:end].decode("latin-1")
        m = re.match(r"HTTP/\d\.\d (\d{3})", head)
        if not m:
            statuses.append("garbage-response")
            return statuses, b""
        length = 0
        cl = re.search(r"(?im)^content-length:\s*(\d+)", head)
        if cl:
            length = int(cl.group(1))
        elif re.search(r"(?im)^transfer-encoding:.*chunked", head):
            term = buf.find(b"\r\n0\r\n\r\n", end)
            if term < 0:
                return statuses, buf
            length = term + 7 - (end + 4)
        if len(buf) < end + 4 + length:
            return statuses, buf
        status = int(m.group(1))
        if not 100 <= status < 200:  # interim answers (100 Continue) are not the answer
            statuses.append(status)
        buf = buf[end + 4 + length:]


def h2_outcome(buf):
    """What an HTTP/2 server said to a bare preface: its frames, up to a GOAWAY."""
    out = "h2"
    while len(buf) >= 9:
        length, kind = int.from_bytes(buf[:3], "big"), buf[3]
        payload = buf[9:9 + length]
        if kind == 7 and len(payload) >= 8:
            return f"h2-goaway:{int.from_bytes(payload[4:8], 'big')}"
        buf = buf[9 + length:]
    return out


def send_raw(req, addr, timeout):
    statuses = []
    try:
        s = socket.create_connection(addr, timeout=timeout)
    except OSError as e:
        return ["conn-error:" + type(e).__name__]
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = req.raw
        try:
            if req.pieces > 1:
                step = max(1, len(data) // req.pieces)
                for k in range(0, len(data), step):
                    s.sendall(data[k:k + step])
                    time.sleep(0.001)
            else:
                s.sendall(data)
            if req.shut_wr:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before the whole body is sent
        buf, deadline, quiet = b"", time.time() + timeout, QUIET_SECS
        half_closed = req.shut_wr
        while True:
            if req.expect == 0:  # HTTP/2 preface: collect frames until the server closes
                got = []
            else:
                got, buf = parse_responses(buf)
            statuses += got
            if req.expect and len(statuses) >= req.expect:
                break
            left = deadline - time.time()
            if left <= 0:
                statuses.append("timeout")
                break
            s.settimeout(min(left, quiet) if not half_closed else left)
            try:
                chunk_ = s.recv(65536)
            except socket.timeout:
                if not half_closed:
                    # Framing the server is still waiting on: say we are done.
                    QUIET["half-closed"] += 1
                    half_closed = True
                    try:
                        s.shutdown(socket.SHUT_WR)
                    except OSError:
                        break
                    continue
                statuses.append("timeout")
                break
            except ConnectionResetError:
                if not statuses:
                    statuses.append("reset")
                break
            except OSError as e:
                statuses.append("conn-error:" + type(e).__name__)
                break
            if not chunk_:
                if req.expect == 0:
                    statuses.append(h2_outcome(buf) if buf else "closed-no-response")
                elif buf:
                    statuses.append("partial-response")
                break
            buf += chunk_
        if not statuses:
            statuses.append("closed-no-response")
    finally:
        s.close()
    return statuses


class ClientWorker:
    """One keep-alive http.client connection per worker thread."""

    def __init__(self, addr, timeout):
        self.addr, self.timeout, self.conn, self.used = addr, timeout, None, 0

    def send(self, req):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(*self.addr, timeout=self.timeout)
                self.used = 0
            reused = self.used > 0
            self.used += 1
            try:
                self.conn.putrequest(req.method, req.target, skip_accept_encoding=True)
                for k, v in req.headers:
                    self.conn.putheader(k.decode("latin-1"), v)
                self.conn.putheader("Content-Length", str(len(req.body)))
                try:
                    self.conn.endheaders(req.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # answered (413) and closed before the body was all sent: read the answer
                resp = self.conn.getresponse()
                body = resp.read()
                if resp.will_close:
                    self.close()
                if req.check is not None:
                    req.problem = req.check(resp.status, resp.getheaders(), body)
                return [resp.status]
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self.close()
                if reused and attempt == 0:
                    continue  # a stale keep-alive connection: retry once on a fresh one
                return ["conn-error:" + type(e).__name__]
            except socket.timeout:
                self.close()
                return ["timeout"]
            except (OSError, http.client.HTTPException) as e:
                self.close()
                return ["conn-error:" + type(e).__name__]
        return ["conn-error:retry"]

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None


# ---------------------------------------------------------------- the oracle: counters and documents

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
MAPPINGS = os.path.join(ROOT, "deployments/elasticsearch/bulk/_component_template/rum-pipeline-elasticsearch-mappings.json")
EVENT_TYPES = {"page_view", "web_vital", "resource", "error", "action", "long_task", "http", "custom",
               "csp_violation", "report"}
DATE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
I64 = (-2**63, 2**63 - 1)


def scrape(addr):
    """The pipeline's /metrics as {(name, ((label, value), ...)): value}."""
    c = http.client.HTTPConnection(*addr, timeout=10)
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode("utf-8", "replace")
    finally:
        c.close()
    samples = {}
    for line in text.splitlines():
        m = SAMPLE_RE.match(line)
        if m and not line.startswith("#"):
            labels = tuple(sorted(LABEL_RE.findall(m.group(2) or "")))
            samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def settled_metrics(addr, seconds=30):
    """/metrics once every buffer is empty and two scrapes 0.3 s apart agree: every event
    accepted has gone as far as it goes. None if that never happens within `seconds`."""
    deadline, last = time.time() + seconds, None
    while time.time() < deadline:
        now = scrape(addr)
        counts = {k: v for k, v in now.items() if k[0].startswith("component_")}
        if last == counts and not any(v for (name, _), v in now.items() if name == "buffer_events"):
            return now
        last = counts
        time.sleep(0.3)
    return None


def per_component(samples, name):
    out = collections.Counter()
    for (n, labels), v in samples.items():
        if n == name:
            out[dict(labels).get("component_id")] += int(v)
    return out


def check_counters(samples, inputs, lines):
    """Every event accounted for: in each component received = sent + discarded, each
    component received what its inputs sent, nothing discarded without intent, and the stdout
    sink wrote as many documents as it counts sent (`lines`, None without a stdout sink)."""
    problems = []
    received = per_component(samples, "component_received_events_total")
    sent = per_component(samples, "component_sent_events_total")
    discarded = per_component(samples, "component_discarded_events_total")
    unintended = collections.Counter()
    for (n, labels), v in samples.items():
        if n == "component_discarded_events_total" and dict(labels).get("intentional") == "false":
            unintended[dict(labels).get("component_id")] += int(v)
    for cid, ups in inputs.items():
        if received[cid] != sent[cid] + discarded[cid]:
            problems.append(f"{cid}: received {received[cid]} != sent {sent[cid]} + discarded {discarded[cid]}")
        if ups and received[cid] != sum(sent[u] for u in ups):
            problems.append(f"{cid}: received {received[cid]} != sent by its inputs {ups}: "
                            f"{sum(sent[u] for u in ups)}")
        if unintended[cid]:
            problems.append(f"{cid}: {unintended[cid]} events discarded unintentionally")
    if lines is not None and lines != sent["out"]:
        problems.append(f"stdout sink: {lines} documents written, {sent['out']} counted sent")
    totals = {"received_by_sources": sum(received[c] for c, ups in inputs.items() if not ups),
              "written": sent["out"], "discarded": sum(discarded.values())}
    return problems, totals


def load_mapping():
    """{dotted path: mapping type} from the index template the pipeline ships."""
    with open(MAPPINGS) as f:
        props = json.load(f)["template"]["mappings"]["properties"]
    out = {}

    def walk_props(node, prefix):
        for key, spec in node.items():
            if "properties" in spec:
                walk_props(spec["properties"], prefix + key + ".")
            else:
                out[prefix + key] = spec["type"]
    walk_props(props, "")
    return out


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def value_fits(ty, v):
    """Whether Elasticsearch would index `v` in a field of type `ty` without a mapping
    error (strictly: the pipeline moves wrong-typed values to rum.extra, so no coercion)."""
    if ty in ("keyword", "text"):
        return isinstance(v, str)
    if ty == "long":
        return isinstance(v, int) and not isinstance(v, bool) and I64[0] <= v <= I64[1]
    if ty == "double":
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    if ty == "boolean":
        return isinstance(v, bool)
    if ty == "date":
        if isinstance(v, str):
            return bool(DATE_RE.match(v))
        return isinstance(v, int) and not isinstance(v, bool) and I64[0] <= v <= I64[1]
    if ty == "ip":
        try:
            ipaddress.ip_address(v)
            return True
        except ValueError:
            return False
    if ty == "geo_point":
        return (isinstance(v, dict) and set(v) == {"lat", "lon"}
                and all(isinstance(v[k], (int, float)) and not isinstance(v[k], bool) for k in v)
                and -90 <= v["lat"] <= 90 and -180 <= v["lon"] <= 180)
    if ty == "flattened":
        return isinstance(v, (dict, list))
    return False


def check_document(doc, mapping):
    """What is wrong with one stdout document, as a list of strings: the ECS fields every
    document has, and every field against the shipped mapping (typed fields of the right
    type, no field the mapping does not know outside a flattened field and labels.*)."""
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    problems = []

    def get(path):
        node = doc
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node
    rum_type = get("rum.type")
    if rum_type not in EVENT_TYPES:
        problems.append(f"rum.type {rum_type!r}")
    if get("event.kind") != "event":
        problems.append(f"event.kind {get('event.kind')!r}")
    if get("event.dataset") != f"rum.{rum_type}":
        problems.append(f"event.dataset {get('event.dataset')!r} for rum.type {rum_type!r}")
    for required in ("@timestamp", "event.ingested"):
        if get(required) is None:
            problems.append(f"no {required}")

    def walk_doc(node, prefix):
        for key, value in node.items():
            path = prefix + key
            ty = mapping.get(path)
            if ty is not None:
                if not value_fits(ty, value):
                    problems.append(f"{path} ({ty}): {json.dumps(value)[:80]}")
            elif isinstance(value, dict) and any(p.startswith(path + ".") for p in mapping):
                walk_doc(value, path + ".")
            elif path.startswith("labels.") and "." not in key and key and (
                    isinstance(value, str) or (path == "labels.csp_noise" and value is True)):
                pass  # the labels dynamic template: strings as keywords (and the csp source's flag)
            else:
                problems.append(f"{path[:80]}: a field the mapping does not know ({json.dumps(value)[:60]})")
    walk_doc(doc, "")
    return problems


def check_documents(path, mapping, limit=5):
    """(documents, documents with a problem, the first `limit` problems) of a stdout file."""
    count, bad, examples = 0, 0, []
    with open(path, "rb") as f:
        for raw in f:
            count += 1
            try:
                doc = json.loads(raw, parse_constant=_no_constant)
                problems = check_document(doc, mapping)
            except (ValueError, UnicodeDecodeError, RecursionError) as e:
                problems = [f"not JSON: {e}"]
            if problems:
                bad += 1
                if len(examples) < limit:
                    examples.append(f"document {count}: {'; '.join(problems[:4])} | {raw[:200]!r}")
    return count, bad, examples


# ---------------------------------------------------------------- the process

def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])  # kB
    except OSError:
        return None
    return None


class Target:
    def __init__(self, binary, sink, transforms, log_path, sdk=False):
        # Port 0: the binary takes a free port and names it in its "listening on" line
        # (a port found free here could be taken by another process before it binds).
        self.port = None
        self.dir = tempfile.mkdtemp(prefix="rum-fuzz-")
        source_ids = ["beacons", "reports"] + (["web_vitals", "faro", "apm"] if sdk else [])
        sources = ", ".join(f'"{s}"' for s in source_ids)
        # Each component's upstreams, for the counters' accounting (check_counters).
        self.inputs = {s: [] for s in source_ids}
        if transforms:
            self.inputs.update(ua=source_ids, scrub=["ua"], out=["scrub"], metrics=["scrub"])
        else:
            self.inputs["out"] = source_ids
        config = PIPELINE.format(
            port=0, sink=sink,
            sdk_sources=SDK_SOURCES.format(port=0) if sdk else "",
            transforms=TRANSFORMS.replace("{inputs}", sources) if transforms else "",
            inputs='"scrub"' if transforms else sources)
        self.config = os.path.join(self.dir, "pipeline.toml")
        with open(self.config, "w") as f:
            f.write(config)
        self.log = open(log_path, "wb") if log_path else None
        env = dict(os.environ, RUM_LOG=os.environ.get("RUM_LOG", "info"))
        # The stdout sink's documents, checked after the run (check_documents).
        self.docs = os.path.join(self.dir, "documents.ndjson")
        with open(self.docs, "wb") as out:
            self.proc = subprocess.Popen([binary, "--config", self.config], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.PIPE, env=env)
        self.panics, self.errors, self.tail = [], 0, collections.deque(maxlen=30)
        self.inflight, self.suspects = set(), set()  # request indices being sent; those sent at a panic
        self.listening = threading.Event()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self.listening.wait(60):
            self.stop()
            shutil.rmtree(self.dir, ignore_errors=True)
            sys.exit("fuzz.py: the pipeline did not start:\n" + "".join(self.tail))

    def _read_stderr(self):
        for line in self.proc.stderr:
            if self.log:
                self.log.write(line)
            text = line.decode("utf-8", "replace")
            self.tail.append(text)
            listening = re.search(r"listening on https?://127\.0\.0\.1:(\d+)", text)
            if listening and self.port is None:
                self.port = int(listening.group(1))
                self.listening.set()
            if "panicked" in text:
                self.panics.append(text.strip())
                self.suspects |= set(self.inflight)
            if " ERROR " in text:
                self.errors += 1

    def alive(self):
        return self.proc.poll() is None

    def hwm_kib(self):
        return proc_status(self.proc.pid, "VmHWM")

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return "did not exit within %ss of SIGTERM (killed)" % timeout
        time.sleep(0.2)  # let the reader drain stderr
        if self.log:
            self.log.close()
        return self.proc.returncode


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--requests", type=int, help="stop after this many requests (default 3000 unless --seconds)")
    ap.add_argument("--seconds", type=float, help="stop after this long")
    ap.add_argument("--workers", type=int, default=4, help="concurrent senders (default 4)")
    ap.add_argument("--max-rss-mib", type=float, default=200, help="fail above this peak RSS (default 200)")
    ap.add_argument("--timeout", type=float, default=15, help="per-request deadline in s (default 15)")
    ap.add_argument("--sink", choices=["stdout", "blackhole"], default="stdout",
                    help="sink of the pipeline; stdout goes to /dev/null (default stdout)")
    ap.add_argument("--no-transforms", action="store_true",
                    help="sources straight to the sink (default: user_agent -> scrub_url -> sink + prometheus)")
    ap.add_argument("--bin", default=os.environ.get("RUM_PIPELINE_BIN", os.path.join(ROOT, "target/debug/rum-pipeline")))
    ap.add_argument("--log", help="write the binary's stderr here")
    ap.add_argument("--show", type=int, metavar="I", help="print request I of --seed (repr of its bytes) and exit")
    ap.add_argument("--only", type=int, metavar="I", help="send only request I of --seed")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--sdk", action="store_true",
                    help="also fuzz the web_vitals, faro and elastic_apm_rum intakes (other requests per seed)")
    ap.add_argument("--extended", action="store_true",
                    help="also the targeted mutations (ECS-named and duplicate keys, nesting at the depth limit, "
                         "edge numbers and escapes, wrong types, many tiny items) and GET of the client script "
                         "(other requests per seed)")
    args = ap.parse_args()

    seeds = load_seeds(args.sdk)
    if args.show is not None:
        req = generate(args.seed, args.show, seeds, args.extended)
        print(f"# seed {args.seed} request {args.show} -> {req.endpoint}: {req.describe()}")
        data = req.as_bytes()
        print(repr(data[:4000]) + (f" ... ({len(data)} bytes)" if len(data) > 4000 else ""))
        return 0
    if args.requests is None and args.seconds is None:
        args.requests = 3000
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"fuzz.py: no binary at {args.bin} (build it, or set RUM_PIPELINE_BIN)")

    target = Target(args.bin, args.sink, not args.no_transforms, args.log, args.sdk)
    # A safety net for the machine: a mutation that blew up would fail this run with a
    # MemoryError rather than take the host's memory (the binary, already started, is not bound).
    resource.setrlimit(resource.RLIMIT_AS, (FUZZER_MAX_VM, resource.getrlimit(resource.RLIMIT_AS)[1]))
    addr = ("127.0.0.1", target.port)
    lock = threading.Lock()
    statuses = collections.Counter()
    per_endpoint = collections.defaultdict(collections.Counter)
    bad = []          # (index, status, description)
    wrong = []        # (index, what is wrong, description): answers a check refused
    fuzzer_errors = []
    no_answer = []    # first few requests without an HTTP answer (index, outcome, description)
    sent = [0]
    next_index = [args.only if args.only is not None else 0]
    last = args.only + 1 if args.only is not None else None
    start = time.time()
    stop = threading.Event()

    def worker():
        try:
            work()
        except Exception:  # a bug of the fuzzer itself: fail loudly, never lose requests silently
            fuzzer_errors.append(traceback.format_exc())
            stop.set()

    def work():
        client = ClientWorker(addr, args.timeout)
        while not stop.is_set():
            with lock:
                i = next_index[0]
                if (last is not None and i >= last) or (args.requests is not None and args.only is None
                                                        and i >= args.requests):
                    break
                if args.seconds is not None and time.time() - start > args.seconds:
                    break
                next_index[0] += 1
                target.inflight.add(i)
            req = generate(args.seed, i, seeds, args.extended)
            got = client.send(req) if req.mode == "client" else send_raw(req, addr, args.timeout)
            with lock:
                target.inflight.discard(i)
                sent[0] += 1
                for st in got:
                    statuses[st] += 1
                    cls = f"{st // 100}xx" if isinstance(st, int) else st.split(":")[0]
                    per_endpoint[req.endpoint][cls] += 1
                    if isinstance(st, str) and not st.startswith("h2") and len(no_answer) < 10:
                        no_answer.append((i, st, req.describe()))
                    if isinstance(st, int) and st >= 500 and st != 503 and not (st == 501 and req.allow_501):
                        bad.append((i, st, req.describe()))
                if req.problem is not None:
                    wrong.append((i, req.problem, req.describe()))
                    if args.only is not None:
                        print(f"request {i}: {st}  {req.describe()}")
            if not target.alive():
                stop.set()
        client.close()

    def progress():
        while not stop.wait(10):
            with lock:
                n = sent[0]
            hwm = target.hwm_kib()
            print(f"  {time.time() - start:6.0f}s {n} requests, peak RSS {hwm and hwm // 1024} MiB", file=sys.stderr)

    threads = [threading.Thread(target=worker) for _ in range(max(1, args.workers))]
    for t in threads:
        t.start()
    threading.Thread(target=progress, daemon=True).start()
    for t in threads:
        t.join()
    stop.set()
    elapsed = time.time() - start

    died = not target.alive()
    peak_kib = target.hwm_kib()
    health = None
    if not died:
        try:
            c = http.client.HTTPConnection(*addr, timeout=10)
            c.request("GET", "/health")
            health = c.getresponse().status
            c.close()
        except (OSError, http.client.HTTPException) as e:
            health = type(e).__name__
        peak_kib = target.hwm_kib() or peak_kib
    samples = None
    if not died:
        try:
            samples = settled_metrics(addr)
        except (OSError, http.client.HTTPException):
            pass
    exit_code = target.proc.returncode if died else target.stop()
    accounting, totals, docs = [], {}, (0, 0, [])
    if args.sink == "stdout":
        docs = check_documents(target.docs, load_mapping())
    if samples is None and not died:
        accounting = ["/metrics did not settle (buffers empty, counters still) within 30 s"]
    elif samples is not None:
        accounting, totals = check_counters(samples, target.inputs, docs[0] if args.sink == "stdout" else None)
    shutil.rmtree(target.dir, ignore_errors=True)

    conn_errors = sum(n for st, n in statuses.items() if isinstance(st, str) and not st.startswith("h2"))
    h2 = sum(n for st, n in statuses.items() if isinstance(st, str) and st.startswith("h2"))
    five = sum(n for st, n in statuses.items() if isinstance(st, int) and st >= 500)
    peak_mib = (peak_kib or 0) / 1024
    failures = []
    if fuzzer_errors:
        failures.append("the fuzzer itself failed:\n" + fuzzer_errors[0])
    if bad:
        failures.append(f"{len(bad)} unexpected 5xx")
    if target.panics:
        failures.append(f"{len(target.panics)} panic line(s) on stderr")
    if died:
        failures.append(f"the process died (exit {exit_code})")
    elif exit_code != 0:
        failures.append(f"SIGTERM: {exit_code if isinstance(exit_code, str) else 'exit %s' % exit_code}")
    if not died and health != 200:
        failures.append(f"/health after the run: {health}")
    if peak_mib > args.max_rss_mib:
        failures.append(f"peak RSS {peak_mib:.1f} MiB > {args.max_rss_mib} MiB")
    if wrong:
        failures.append(f"{len(wrong)} wrong answer(s)")
    if accounting:
        failures.append("events not accounted for: " + "; ".join(accounting))
    if docs[1]:
        failures.append(f"{docs[1]} of {docs[0]} documents wrong")

    report = {
        "seed": args.seed, "requests": sent[0], "seconds": round(elapsed, 1),
        "requests_per_second": round(sent[0] / elapsed, 1) if elapsed else 0,
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "per_endpoint": {e: dict(sorted(c.items())) for e, c in sorted(per_endpoint.items())},
        "5xx": five, "unexpected_5xx": [{"request": i, "status": st, "what": d} for i, st, d in bad[:20]],
        "connection_errors": conn_errors, "half_closed_after_quiet": QUIET["half-closed"],
        "no_answer_examples": [{"request": i, "outcome": st, "what": d} for i, st, d in no_answer], "panics": target.panics[:5],
        "in_flight_at_panic": sorted(target.suspects)[:20], "error_log_lines": target.errors,
        "wrong_answers": [{"request": i, "problem": w, "what": d} for i, w, d in wrong[:20]],
        "died": died, "exit_on_sigterm": exit_code, "health_after": health,
        "peak_rss_mib": round(peak_mib, 1), "max_rss_mib": args.max_rss_mib,
        "events": totals, "accounting_problems": accounting, "documents": docs[0],
        "documents_wrong": docs[1], "document_problems": docs[2],
        "result": "FAIL: " + "; ".join(failures) if failures else "ok",
    }
    flags = (" --sdk" if args.sdk else "") + (" --extended" if args.extended else "")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"fuzz: seed {args.seed}, {sent[0]} requests in {elapsed:.1f} s ({report['requests_per_second']}/s), "
              f"{args.workers} workers, binary {args.bin}")
        print("  statuses: " + ", ".join(f"{k} {v}" for k, v in report["statuses"].items()))
        for e, c in report["per_endpoint"].items():
            print(f"  {e:14} " + ", ".join(f"{k} {v}" for k, v in c.items()))
        print(f"  5xx: {five} (503 and documented 501 allowed; unexpected: {len(bad)}), "
              f"HTTP/2 prefaces answered: {h2}, connection errors/timeouts/no answer: {conn_errors}, "
              f"raw requests half-closed after {QUIET_SECS:.0f} s unanswered: {QUIET['half-closed']}")
        print(f"  panics: {len(target.panics)}, ERROR log lines: {target.errors}, died: {died}, "
              f"exit on SIGTERM: {exit_code}, /health after: {health}")
        print(f"  peak RSS (VmHWM): {peak_mib:.1f} MiB (bound {args.max_rss_mib} MiB)")
        print(f"  events: {totals.get('received_by_sources', '?')} received by the sources, "
              f"{totals.get('written', '?')} written, {totals.get('discarded', '?')} discarded (counted); "
              f"accounting: {'; '.join(accounting) or 'ok'}")
        if args.sink == "stdout":
            print(f"  documents: {docs[0]} on stdout, {docs[1]} wrong")
        for problem in docs[2]:
            print("  WRONG " + problem)
        for i, st, d in bad[:20]:
            print(f"  UNEXPECTED {st}: request {i} -> reproduce: bench/fuzz.py --seed {args.seed}{flags} --only {i}  ({d})")
        for i, what, d in wrong[:20]:
            print(f"  WRONG ANSWER: request {i}: {what} -> reproduce: bench/fuzz.py --seed {args.seed}{flags} --only {i}  ({d})")
        for i, st, d in no_answer:
            print(f"  no HTTP answer ({st}): request {i} ({d})")
        for p in target.panics[:5]:
            print("  PANIC: " + p)
        if target.panics:
            print(f"  requests in flight at the panic(s): {sorted(target.suspects)[:20]} "
                  f"(try each: bench/fuzz.py --seed {args.seed} --only I)")
        if died or target.panics:
            print("  last stderr lines:\n" + "".join("    " + l for l in target.tail))
        print("  result: " + report["result"])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
