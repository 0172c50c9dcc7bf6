#!/usr/bin/env python3
"""Calls made to the allocator in a callgrind output file (not a test).

    bench/callgrind_calls.py FILE

Prints one number: the calls to the allocation entry points (mimalloc's
`mi_malloc`, `mi_zalloc`, `mi_realloc` and their aligned forms, and the C
library's `malloc`, `calloc`, `realloc`), counted from callgrind's call
records, so `bench/instructions.sh` can report allocations per beacon next
to instructions. Instructions miss what allocations cost a pipeline: a
block made by one request and freed later, on another worker, is cold
(docs/benchmarks.md, "What an event's life costs").
"""

import re
import sys

ENTRY_POINTS = {
    "mi_malloc",
    "mi_zalloc",
    "mi_realloc",
    "mi_malloc_aligned",
    "mi_zalloc_aligned",
    "mi_realloc_aligned",
    "malloc",
    "calloc",
    "realloc",
}

# `cfn=(id) name` names a callee the first time its id appears, `cfn=(id)`
# after that; the `calls=N ...` line that follows counts the calls to it.
CALLEE = re.compile(r"^cfn=\((\d+)\)(?: (.*))?$")
NAMED = re.compile(r"^c?fn=\((\d+)\) (.*)$")
CALLS = re.compile(r"^calls=(\d+)")


def allocation_calls(path):
    names = {}
    callee = None
    total = 0
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            line = line.rstrip("\n")
            named = NAMED.match(line)
            if named:
                names[named.group(1)] = named.group(2).strip()
            match = CALLEE.match(line)
            if match:
                callee = names.get(match.group(1))
                continue
            calls = CALLS.match(line)
            if calls and callee is not None:
                if callee in ENTRY_POINTS:
                    total += int(calls.group(1))
                callee = None
    return total


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench/callgrind_calls.py FILE")
    print(allocation_calls(sys.argv[1]))
