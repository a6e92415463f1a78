"""The human summary printed at the end of a run, and the machine one (`--json`).

One screen, facts only, each from the committed manifest or measured by the run: what
was embedded, rejected and truncated, how fast, where the output and its rejects are,
and which manifest version now describes it.
"""

from __future__ import annotations

from typing import Any


def _get(obj: Any, name: str) -> Any:
    """A field of the manifest, whether it is a plain dict or a typed record."""
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def _as_dict(manifest: Any) -> dict[str, Any]:
    if isinstance(manifest, dict):
        return manifest
    to_dict = getattr(manifest, "to_dict", None)
    return to_dict() if callable(to_dict) else dict(vars(manifest))


def rejects_paths(manifest: dict[str, Any]) -> list[str]:
    """Paths (relative to the output) of the rejects files of the current version."""
    return sorted(s["rejects"]["path"] for s in manifest["shards"] if s.get("rejects"))


def json_summary(manifest: Any) -> dict[str, Any]:
    """The one-line JSON summary (`--json`): version, totals, changes, tokens/s."""
    m = _as_dict(manifest)
    return {
        "version": m["version"],
        "totals": m["totals"],
        "changes": m["changes"]["counts"],
        "tokens_per_s": m["run"]["tokens_per_s"],
        "seconds": m["run"]["seconds"],
        "executor": m["run"].get("executor"),  # absent from manifests of older runs
        "executor_reason": m["run"].get("executor_reason"),
    }


def human_summary(manifest: Any, output: str, wall_s: float, working_rate: float | None = None) -> str:
    """A few lines a person reads at the end of a run. `working_rate`: tokens/s while shards
    were being embedded (the progress bar's), beside the manifest's rate over the whole
    embedding step, start-up of the cluster, actors and model included."""
    m = _as_dict(manifest)
    t, run, changes = m["totals"], m["run"], m["changes"]["counts"]
    root = output.rstrip("/")
    embedded_now = run["embedded_shards"]
    lines = [
        f"e5ray: done in {wall_s:.1f} s: manifest version {m['version']} ({root}/manifest.json)",
        f"  rows       {t['embedded']:,} embedded, {t['rejected']:,} rejected"
        + (f" ({t['duplicates']:,} as ids of earlier shards)" if t.get("duplicates") else "")
        + f", {t['truncated']:,} truncated (of {t['input_rows']:,} input rows in {t['shards']} shards)",
        f"  this run   {embedded_now} shards embedded, {run['reused_shards']} reused from an interrupted run, "
        f"{run['carried_shards']} carried unchanged; {changes['added']} added, {changes['changed']} changed, "
        f"{changes['removed']} removed",
        f"  speed      {run['tokens']:,} tokens: "
        + (f"{working_rate:,.0f} tokens/s while embedding, " if working_rate else "")
        + f"{run['tokens_per_s']:,.0f} tokens/s over the whole step (start-up included)",
        f"  executor   {run.get('executor', 'not recorded')}"
        + (f" ({run['executor_reason']})" if run.get("executor_reason") else ""),
        f"  space      {m['space']['model']} dim {m['space']['dim']}, {m['space']['prefix']!s} prefix, "
        f"max length {m['space']['max_length']}",
    ]
    rejects = rejects_paths(m)
    if rejects:
        where = (
            f"{root}/{rejects[0]}"
            if len(rejects) == 1
            else f"{root}/{rejects[0].rsplit('/', 1)[0]}/ ({len(rejects)} files)"
        )
        lines.append(f"  rejects    {where}: one JSON line per row, with its reason")
    if t["truncated"]:
        lines.append(f"  truncated  rows longer than {m['space']['max_length']} tokens were cut (see --max-length)")
    lines.append(f"  read it    python -c 'import e5ray; print(e5ray.read_embeddings(\"{root}\").count_rows())'")
    return "\n".join(lines)
