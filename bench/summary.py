#!/usr/bin/env python3
"""Summary of a bench/run.sh results file (one line per process start):
medians in the historical one-line format, min/median/max with ratios to bare
warp's medians, per-start CPU-us per beacon, and the overload table.
Usage: bench/summary.py bench/results/run-TIME.txt"""
import sys, statistics
from collections import OrderedDict

# Targets without a pipeline (bench/run.sh): bare warp and examples/bare_warp_work.
BARE_TARGETS = {
    "bare_warp", "bare_alloc", "bare_floor", "bare_decode", "bare_hop", "bare_hop_count",
    "bare_typed", "bare_typed_hop",
}
runs = OrderedDict()
for line in open(sys.argv[1]):
    if line.startswith("#") or not line.strip():
        continue
    name, *kvs = line.split()
    v = dict(kv.split("=", 1) for kv in kvs)
    if name == "bare_warp" and v.get("phase") == "overload":
        name = "overload_bare_warp"  # the overload phase's own ceiling
    r = {k: float(x) for k, x in v.items() if k not in ("fullest", "phase")}
    r["fullest"] = v.get("fullest", "-")
    # Answers over 399 (wrk's "Non-2xx or 3xx responses") are beacons the
    # server refused, shed or rate-limited, not beacons taken in; results
    # files from before 2026-12-04 only have their sum with socket errors.
    r["refused"] = r.get("non2xx", r.get("non2xx_or_errors", 0))
    r["socket_errors"] = r.get("socket_errors", 0)
    r["answers"] = r["requests"] / r["seconds"]
    r["taken"] = taken = r["requests"] - r["refused"]
    r["rps"] = taken / r["seconds"]
    r["cpu"] = 1e6 * r["cpu_ticks"] / r["hz"] / taken if taken > 0 else float("nan")
    r["rss"] = r["peak_rss_kib"] / 1024
    r["anon"] = r.get("peak_anon_kib", 0) / 1024
    # Peak RSS without the mapped GeoIP database's file pages (the measure
    # proposed for the budgets: what the process itself holds).
    r["nodb"] = (r["peak_rss_kib"] - r.get("mapped_db_kib", 0)) / 1024
    runs.setdefault(name, []).append(r)
med = lambda rs, k: statistics.median(x[k] for x in rs)
bare = runs.get("bare_warp", [])
if not bare:
    bare = runs.get("overload_bare_warp", [])
base_rps = med(bare, "rps") if bare else float("nan")
base_cpu = med(bare, "cpu") if bare else float("nan")
steady = [n for n in runs if not n.startswith("overload_")]
print(f"medians over the process starts ({', '.join(f'{n} x{len(runs[n])}' for n in runs)})")
print("%-16s %12s %12s %9s %9s %12s %14s %10s" % ("target", "beacons/s", "events/s", "p50_ms", "p99_ms", "peak_rss_MiB", "cpu_us/beacon", "vs_bare"))
for n in steady:
    rs = runs[n]
    print("%-16s %12.0f %12.0f %9.2f %9.2f %12.1f %14.1f %9.0f%%" % (n, med(rs, "rps"), 10 * med(rs, "rps"), med(rs, "p50_ms"), med(rs, "p99_ms"), med(rs, "rss"), med(rs, "cpu"), 100 * med(rs, "rps") / base_rps))
    refused = sum(x["refused"] for x in rs)
    socket_errors = sum(x["socket_errors"] for x in rs)
    if refused or socket_errors:
        print(f"  ({n}: {refused:.0f} answers over 399 and {socket_errors:.0f} socket errors over {len(rs)} starts, not counted as beacons)")
print()
print("min / median / max over the starts; ratios are of the medians to bare warp's in this run")
print("%-16s %-24s %8s %-20s %9s %-20s %-18s %-18s %-18s" % ("target", "beacons/s", "%bare", "cpu_us/beacon", "cpu_xbare", "p99_ms", "peak_rss_MiB", "peak_anon_MiB", "rss_less_db_MiB"))
mmm = lambda rs, k, f: "/".join(f % x for x in (min(r[k] for r in rs), med(rs, k), max(r[k] for r in rs)))
for n in steady:
    rs = runs[n]
    print("%-16s %-24s %7.1f%% %-20s %8.2fx %-20s %-18s %-18s %-18s" % (n, mmm(rs, "rps", "%.0f"), 100 * med(rs, "rps") / base_rps, mmm(rs, "cpu", "%.1f"), med(rs, "cpu") / base_cpu, mmm(rs, "p99_ms", "%.2f"), mmm(rs, "rss", "%.1f"), mmm(rs, "anon", "%.1f"), mmm(rs, "nodb", "%.1f")))
print()
print("cpu_us/beacon of every start, in start order (two clusters = bimodal):")
for n in steady:
    print("  %-14s %s" % (n, " ".join("%.0f" % r["cpu"] for r in runs[n])))
print("of which system time (us/beacon), and context switches per beacon (voluntary+involuntary):")
for n in steady:
    rs = runs[n]
    if "sys_ticks" in rs[0]:
        per = lambda r, x: x / r["taken"] if r["taken"] > 0 else float("nan")
        print("  %-14s sys %s" % (n, " ".join("%.0f" % per(r, 1e6 * r["sys_ticks"] / r["hz"]) for r in rs)))
        print("  %-14s csw %s" % ("", " ".join("%.2f" % per(r, r["vcsw"] + r["nvcsw"]) for r in rs)))
    # bare_warp and examples/bare_warp_work (bare_*) have no buffers to sample.
    if n not in BARE_TARGETS and "queued_events" in rs[0]:
        print("  %-14s queued events (mean) %s" % ("", " ".join("%.0f" % r["queued_events"] for r in rs)))
over = [n for n in runs if n.startswith("overload_") and n != "overload_bare_warp"]
if over:
    print()
    print("overload: sink stalled (stdout into an unread pipe), 10x connections; 503 = shed")
    print("%-16s %-20s %-20s %-20s %-20s %10s %10s %12s" % ("target", "peak_rss_MiB", "peak_anon_MiB", "rss_less_db_MiB", "end_rss_MiB", "answers/s", "503_share", "2xx_total"))
    for n in over:
        rs = runs[n]
        for r in rs:
            r["end_rss"] = r["end_rss_kib"] / 1024
            r["share"] = r.get("status_503", 0) / max(1, r["requests"])
        print("%-16s %-20s %-20s %-20s %-20s %10.0f %9.1f%% %12.0f" % (n, mmm(rs, "rss", "%.1f"), mmm(rs, "anon", "%.1f"), mmm(rs, "nodb", "%.1f"), mmm(rs, "end_rss", "%.1f"), med(rs, "answers"), 100 * med(rs, "share"), med(rs, "status_2xx")))

# A steady run (or the overload phase's bare warp) with refused answers or
# socket errors measured something else than the server taking beacons in:
# its figures are printed above, and the run fails.
failed = [n for n in runs if n not in over and any(r["refused"] or r["socket_errors"] for r in runs[n])]
if failed:
    print(f"error: {', '.join(failed)}: answers over 399 or socket errors (see above); these figures are not beacons taken in", file=sys.stderr)
    sys.exit(1)
