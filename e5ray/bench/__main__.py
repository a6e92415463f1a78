"""`python -m e5ray.bench --stage NAME --params P --result R`: one benchmark stage in its own process.

Started by `run_stage`; users run `jobs/benchmark.py`.
"""

from __future__ import annotations

import sys

from e5ray.bench.stages import stage_main

if __name__ == "__main__":
    sys.exit(stage_main())
