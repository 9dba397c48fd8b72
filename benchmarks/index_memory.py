"""Memory and build time of seawall's in-memory chunk index at N chunks (default 10 million).

Each measurement runs in a fresh ``python -c`` so that the peak RSS belongs to that work alone;
the baseline run does the same imports without building anything, and the difference is what
the index costs.

Usage: python benchmarks/index_memory.py [--chunks 10000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

PRELUDE = """
import json, resource, sys, time
import numpy as np
import seawall
n = int(sys.argv[1])
start = time.perf_counter()
"""

# TODO(lead): make build_index use the real API, e.g.
#   seawall.repository.index.MasterIndex.from_entries(entries)
# Until then it builds the sorted 49-byte-per-blob structured array that the index keeps,
# which gives a lower bound for the real thing.
BUILD = """
def build_index(n):
    dtype = np.dtype([("id", "S32"), ("pack", "<u4"), ("offset", "<u4"),
                      ("length", "<u4"), ("raw_length", "<u4"), ("type", "u1")])
    rng = np.random.default_rng(0)
    entries = np.zeros(n, dtype)
    entries["id"] = np.frombuffer(rng.bytes(32 * n), "S32")
    entries["pack"] = np.arange(n) // 2000
    entries["length"] = rng.integers(512, 8 << 20, n)
    entries.sort(order="id")
    return entries

index = build_index(n)
"""

REPORT = """
seconds = time.perf_counter() - start
rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_rss_kb": rss_kb}))
"""


def run(code: str, n: int) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + code + REPORT, str(n)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"measurement failed:\n{proc.stderr}")
    result: dict[str, float] = json.loads(proc.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=10_000_000)
    args = parser.parse_args()
    base = run("", args.chunks)
    built = run(BUILD, args.chunks)
    delta_kb = built["peak_rss_kb"] - base["peak_rss_kb"]
    print(f"chunks:          {args.chunks:,}")
    print(f"baseline RSS:    {base['peak_rss_kb'] / 1024:8.1f} MB")
    print(f"peak RSS:        {built['peak_rss_kb'] / 1024:8.1f} MB")
    print(
        f"index cost:      {delta_kb / 1024:8.1f} MB ({delta_kb * 1024 / args.chunks:.1f} B/chunk)"
    )
    print(f"build time:      {built['seconds']:8.2f} s")


if __name__ == "__main__":
    main()
