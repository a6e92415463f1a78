"""The schedule examples (cron, Kubernetes CronJob, RayJob) use only real flags."""

from __future__ import annotations

from pathlib import Path

import pytest

# ---------------------------------------------------------------------------
# The schedule examples
# ---------------------------------------------------------------------------

SCHEDULES = Path(__file__).resolve().parents[2] / "examples" / "schedules"


def test_schedule_examples_use_only_real_flags():
    """Every flag the examples pass exists: job flags after refresh_corpus.py, gc flags
    after `e5ray.cli gc`, `ray job submit` options before its `--`."""
    import argparse
    import re
    import subprocess

    import yaml

    from e5ray.cli.app import add_job_arguments, build_parser

    job_parser = argparse.ArgumentParser()
    add_job_arguments(job_parser)
    job_flags = {o for a in job_parser._actions for o in a.option_strings}
    gc_parser = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["gc"]
    gc_flags = {o for a in gc_parser._actions for o in a.option_strings}
    ray_cli = pytest.importorskip("ray.dashboard.modules.job.cli")
    submit_flags = {o for p in ray_cli.submit.params for o in p.opts}

    seen = set()
    for name in ("cron.sh", "k8s-cronjob.yaml", "rayjob.yaml"):
        text = (SCHEDULES / name).read_text()
        code = " ".join(line for line in text.replace("\\\n", " ").splitlines() if not line.lstrip().startswith("#"))
        for part in re.split(r"(?=ray job submit|refresh_corpus\.py|e5ray\.cli gc|&&)", code):
            if part.startswith("ray job submit"):
                part, allowed = part.split(" -- ")[0], submit_flags
            elif part.startswith("refresh_corpus.py"):
                allowed = job_flags
            elif part.startswith("e5ray.cli gc"):
                allowed = gc_flags
            else:
                continue
            flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", part))
            assert flags <= allowed, f"{name}: unknown flags {sorted(flags - allowed)} in {part[:80]!r}"
            seen.add((name, part.split()[0]))
        assert "refresh_corpus.py" in code
    assert {("cron.sh", "ray"), ("cron.sh", "refresh_corpus.py"), ("k8s-cronjob.yaml", "ray")} <= seen

    cron = (SCHEDULES / "cron.sh").read_text()
    assert "flock" in cron and "--working-dir ." in cron
    assert subprocess.run(["bash", "-n", str(SCHEDULES / "cron.sh")], capture_output=True).returncode == 0
    cronjob = yaml.safe_load((SCHEDULES / "k8s-cronjob.yaml").read_text())
    assert cronjob["kind"] == "CronJob" and cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    rayjob = yaml.safe_load((SCHEDULES / "rayjob.yaml").read_text())
    assert rayjob["kind"] == "RayJob" and "refresh_corpus.py" in rayjob["spec"]["entrypoint"]
    assert (SCHEDULES / "README.md").exists()
