"""`python -m e5ray.bench`: the dispatcher lists its subcommands without importing Ray, and runs each by name."""

from __future__ import annotations

import subprocess
import sys

from bench_utils import REPO, run_bench

from e5ray.bench.__main__ import SUBCOMMANDS, main, summary


def test_help_lists_every_subcommand_with_its_summary(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, module in SUBCOMMANDS.items():
        line = next(x for x in out.splitlines() if x.strip().startswith(name + " "))
        assert summary(module) and summary(module) in line
    assert "--stage" in out


def test_an_unknown_subcommand_fails_with_the_list(capsys):
    assert main(["no-such-bench"]) == 2
    assert "unknown subcommand 'no-such-bench'" in capsys.readouterr().err


def test_help_and_every_subcommand_outside_the_cluster_group_run_without_ray():
    # A fresh interpreter: this one may have imported Ray for other tests.
    others = [m for m in SUBCOMMANDS.values() if not m.startswith("e5ray.bench.cluster.")]
    probe = (
        "import importlib, sys\n"
        "from e5ray.bench.__main__ import usage\n"
        "usage()\n"
        f"for module in {others!r}:\n"
        "    importlib.import_module(module)\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_each_subcommand_answers_its_own_help(tmp_path):
    for name in SUBCOMMANDS:
        done = run_bench(name, ["--help"], cwd=tmp_path, timeout=120)
        assert f"python -m e5ray.bench {name}" in done.stdout
