"""Reports of an evaluation run: a markdown table over benchmarks, a per-category accuracy plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_PLOTTED_FIELDS = 4
MAX_BARS = 30


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per benchmark naming its scorer and how answers were extracted, so no number travels alone."""
    lines = ["| benchmark | scorer | extraction | items | samples | accuracy | pass@k | format |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        k = r.get("samples_per_item", 1)
        pass_k = next((f"{100 * v:.2f}% (pass@{key[5:]})" for key, v in r.items() if key.startswith("pass@")), "-")
        extraction = ", ".join(f"{m}: {n}" for m, n in r.get("extraction", {}).items())
        fmt = f"{100 * r['format_rate']:.1f}%" if r.get("format_rate") is not None else "-"
        lines.append(f"| {name} | {r['scorer']} ({r['scorer_version']}) | {extraction} | {r['items']} | {k} | "
                     f"{100 * r['accuracy']:.2f}% ({r['correct']}/{r['total']}) | {pass_k} | {fmt} |")
    return "\n".join(lines) + "\n"


def plot_categories(result: dict[str, Any], path: Path) -> Path | None:
    """Horizontal bars of accuracy per category, one panel per breakdown field; None when there is none."""
    fields = [(name, cells) for name, cells in result.get("breakdown", {}).items() if cells][:MAX_PLOTTED_FIELDS]
    if not fields:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [min(len(cells), MAX_BARS) for _, cells in fields]
    fig, axes = plt.subplots(len(fields), 1, figsize=(8, 1.2 + 0.28 * sum(heights) + 0.6 * len(fields)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (name, cells) in zip(axes[:, 0], fields):
        items = list(cells.items())[:MAX_BARS]
        labels = [f"{value} (n={cell['total']})" for value, cell in items]
        ax.barh(labels, [100 * cell["accuracy"] for _, cell in items], color="#4c72b0")
        ax.set_xlim(0, 100)
        ax.invert_yaxis()
        ax.set_title(name, fontsize=10, loc="left")
        ax.tick_params(labelsize=8)
    axes[-1, 0].set_xlabel("accuracy (%)")
    fig.suptitle(f"{result['benchmark']}: {100 * result['accuracy']:.2f}% overall ({result['scorer']})", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
