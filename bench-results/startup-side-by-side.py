"""Alternating pairs of whole processes, each variant of a child script spawned in turn.

    PYTHONPATH=$PWD python bench-results/startup-side-by-side.py CHILD.py VARIANT_A VARIANT_B PAIRS EMBED-ARGS...

Each run gets a fresh output dir (OUTPUT-<variant>-<i>; EMBED-ARGS must not name --output) and
prints: variant, 1-minute load at spawn, wall from spawn to exit, first_vector and exit marks.
"""

import json
import subprocess
import sys
import time

child, a, b, pairs, *args = sys.argv[1:]
out = args.pop(args.index("--out-base") + 1)
args.remove("--out-base")
for i in range(int(pairs)):
    for variant in (a, b):
        load = open("/proc/loadavg").read().split()[0]
        t0 = time.perf_counter()
        run = subprocess.run(
            [sys.executable, child, variant, *args, "--output", f"{out}-{variant}-{i}"], capture_output=True, text=True
        )
        wall = time.perf_counter() - t0
        lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
        marks = json.loads(lines[-1])["startup"] if lines else {}
        print(
            json.dumps(
                {"variant": variant, "load": float(load), "wall": round(wall, 2), **marks, "rc": run.returncode}
            ),
            flush=True,
        )
