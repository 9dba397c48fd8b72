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

# What opening a repository does: decode each stored index object (500k blobs
# each, as prune writes them) and add it to the MasterIndex; the first lookup
# merges them. Then: lookups (backup's dedup check) and prune's used-blob test.
BUILD = """
from seawall.repository.index import BLOB_DTYPE, IndexObject, MasterIndex

def build_index(n):
    rng = np.random.default_rng(0)
    index = MasterIndex()
    per = 500_000
    for start in range(0, n, per):
        m = min(per, n - start)
        entries = np.zeros(m, BLOB_DTYPE)
        entries["id"] = np.frombuffer(rng.bytes(32 * m), "S32")
        entries["pack"] = np.arange(m) // 16
        entries["length"] = 1 << 20
        packs = [(rng.bytes(32), 16 << 20, rng.bytes(16)) for _ in range(m // 16 + 1)]
        stored = IndexObject(packs, entries, []).encode()
        del entries
        index.add_index(None, IndexObject.decode(stored))
        del stored
    return index

index = build_index(n)
index.entries()  # the merge
opened = time.perf_counter()
peak_open_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open("/proc/self/status") as status:
    steady_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
probe = index.entries()["id"][:: max(1, n // 100_000)].copy()
t = time.perf_counter()
hits = sum(index.has(bytes(b).ljust(32, b"\\0")) for b in probe)
lookup_us = (time.perf_counter() - t) / len(probe) * 1e6
assert hits == len(probe)
t = time.perf_counter()
from seawall.operations.prune import member_of
used = member_of(index.entries()["id"], np.unique(probe))
prune_mark_s = time.perf_counter() - t
extra = {
    "open_s": opened - start,
    "steady_rss_kb": steady_kb,
    "peak_open_kb": peak_open_kb,
    "lookup_us": lookup_us,
    "prune_mark_s": prune_mark_s,
}
"""

REPORT = """
seconds = time.perf_counter() - start
rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_rss_kb": rss_kb, **globals().get("extra", {})}))
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
    steady = built["steady_rss_kb"] - base["peak_rss_kb"]
    print(f"index held open: {steady / 1024:8.1f} MB ({steady * 1024 / args.chunks:.1f} B/chunk)")
    print(f"peak while opening: {(built['peak_open_kb'] - base['peak_rss_kb']) / 1024:5.1f} MB")
    print(f"open (load+merge): {built['open_s']:6.2f} s")
    print(f"lookup:          {built['lookup_us']:8.1f} us per blob")
    print(f"prune mark pass: {built['prune_mark_s']:8.2f} s (vectorized over all blobs)")


if __name__ == "__main__":
    main()
