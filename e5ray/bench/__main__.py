"""`python -m e5ray.bench <subcommand> [args]`: the benchmarks that are not Ray jobs, one subcommand each.

    python -m e5ray.bench --help                 # the subcommands, one line each
    python -m e5ray.bench scale small-files --help
    python -m e5ray.bench --stage NAME --params P --result R   # one stage of jobs/benchmark.py

Each subcommand is a module with a `main(argv) -> int`, imported only when it runs: listing
the subcommands reads their docstrings without importing them, so `--help` (and every
subcommand outside `e5ray.bench.cluster`) runs without importing Ray. `--stage` is the stage
process that `e5ray.bench.stages.run_stage` starts; users run `jobs/benchmark.py`.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Sequence

# Subcommand -> the module whose `main(argv)` runs it. Modules under e5ray.bench.cluster
# import Ray; the others never do.
SUBCOMMANDS: dict[str, str] = {
    "driver": "e5ray.bench.commands.driver",
    "finish": "e5ray.bench.commands.finish",
    "manifest": "e5ray.bench.commands.manifest",
    "refresh": "e5ray.bench.commands.refresh",
    "changes": "e5ray.bench.commands.changes",
    "fusion-counts": "e5ray.bench.commands.fusion_counts",
    "gpu-bench": "e5ray.bench.commands.gpu_bench",
    "gpu-actors": "e5ray.bench.commands.gpu_actors",
    "slices": "e5ray.bench.commands.slices",
    "scale": "e5ray.bench.cluster.scale",
}

PROG = "python -m e5ray.bench"


def summary(module: str) -> str:
    """The first line of `module`'s docstring, read from its source: nothing is imported but
    its parent packages (which import no Ray)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return "(missing)"
    with open(spec.origin, encoding="utf-8") as source:
        docstring = ast.get_docstring(ast.parse(source.read())) or ""
    return docstring.splitlines()[0] if docstring else ""


def usage() -> str:
    """`--help`: every subcommand with its one-line summary."""
    width = max(len(name) for name in SUBCOMMANDS)
    lines = [f"usage: {PROG} <subcommand> [args]   ({PROG} <subcommand> --help for its options)", ""]
    lines += ["subcommands:"]
    lines += [f"  {name:<{width}}  {summary(module)}" for name, module in SUBCOMMANDS.items()]
    lines += ["", f"  {PROG} --stage NAME --params P --result R: one stage of jobs/benchmark.py (started by run_stage)"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the subcommand named first in `argv` with the rest of it."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0].split("=")[0] == "--stage":
        from e5ray.bench.stages import stage_main

        return stage_main(args)
    if not args:
        print(usage(), file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"{PROG}: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name])
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
