"""One whole `e5ray embed --json` process; the exit cut side by side (BENCHMARKS.md, start-up).

    PYTHONPATH=$PWD python bench-results/startup-exit-child.py together|serial EMBED-ARGS...

`serial` restores Ray's own `ray.shutdown()` at exit (the node's processes stopped one by one);
`together` is the product as committed. The parent times the process from spawn to exit.
"""

import sys

import ray

import e5ray.cli.app as cli
import e5ray.executors.ray_start as ray_start

if sys.argv[1] == "serial":
    ray_start.end_local_ray = lambda *_: ray.shutdown()
sys.exit(cli.main(["embed", *sys.argv[2:], "--json", "--progress", "off"]))
