"""PNG chart of an `e5ray eval` report: each metric per variant with its interval.

Left panel: every variant's metric values with their bootstrap intervals as error bars.
Right panel: each later variant's difference to the first, with its paired interval; a bar
whose interval does not cross the zero line is a measured difference. matplotlib is
imported here only (the `eval` extra), with the file-only Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_chart(report: dict[str, Any], path: str | Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError("--chart-out needs matplotlib: pip install 'e5ray[eval]'") from exc
    import numpy as np

    metrics: list[str] = report["metrics"]
    variants: list[dict[str, Any]] = report["variants"]
    x = np.arange(len(metrics))
    width = 0.8 / len(variants)
    panels = 2 if len(variants) > 1 else 1
    legend_rows = -(-len(variants) // 3)
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.2 + 0.25 * legend_rows), squeeze=False)
    ax = axes[0][0]
    for i, variant in enumerate(variants):
        values = np.array([variant["metrics"][m]["value"] for m in metrics])
        low = values - np.array([variant["metrics"][m]["low"] for m in metrics])
        high = np.array([variant["metrics"][m]["high"] for m in metrics]) - values
        ax.bar(
            x + (i - (len(variants) - 1) / 2) * width, values, width, yerr=[low, high], capsize=3, label=variant["name"]
        )
    ax.set_xticks(x, metrics)
    ax.set_ylim(0, 1.05)
    ax.set_title("metric per variant")
    handles, labels = ax.get_legend_handles_labels()
    if panels == 2:
        ax = axes[0][1]
        later = variants[1:]
        dwidth = 0.8 / len(later)
        for i, variant in enumerate(later, start=1):
            diffs = [variant["vs_first"][m] for m in metrics]
            values = np.array([d["diff"] for d in diffs])
            low = values - np.array([d["low"] for d in diffs])
            high = np.array([d["high"] for d in diffs]) - values
            offset = (i - 1 - (len(later) - 1) / 2) * dwidth
            ax.bar(x + offset, values, dwidth, yerr=[low, high], capsize=3, color=f"C{i}")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(x, metrics)
        ax.set_title(f"difference to {variants[0]['name']} (paired)")
    # One legend under both panels: the colours are the same variant in each.
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(variants)), fontsize=8, frameon=False)
    boot = report["bootstrap"]
    fig.suptitle(
        f"{report['data']['queries']} queries, {report['data']['passages']} passages; error bars: "
        f"{boot['confidence']:.0%} bootstrap intervals over queries ({boot['resamples']} resamples, seed {boot['seed']})",
        fontsize=9,
    )
    fig.tight_layout(rect=(0.0, 0.06 * legend_rows, 1.0, 1.0))
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
