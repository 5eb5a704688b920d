"""Run reports: a text summary, and OUTPUT/report.html (curves, evaluation, rollout browser) in one file.

data.py gathers what a run's output folder holds; page.py turns it into a self-contained page; the eval page
(phaserl.eval.report) reuses the same page with its own payload.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from phaserl.logs import read_metrics


def _first_last(rows: list[dict], key: str, k: int = 5) -> tuple[float, float] | None:
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    if not vals:
        return None
    k = max(1, min(k, len(vals) // 2 or 1))
    return sum(vals[:k]) / k, sum(vals[-k:]) / k


def summary(out_dir: Path) -> str:
    rows = [r for r in read_metrics(out_dir) if not r.get("final") and r.get("step", 0) > 0]  # training steps
    if not rows:
        return f"{out_dir}: no training step logged yet"
    lines = [
        f"{'stage':<24} {'steps':>5} {'reward first->last':>20} {'accuracy first->last':>22} {'s/step':>7}"
    ]
    for stage in dict.fromkeys(r["stage"] for r in rows):
        rs = [r for r in rows if r["stage"] == stage]
        rw = _first_last(rs, "reward/mean")
        ac = _first_last(rs, "reward/accuracy") or _first_last(rs, "reward/last_number")
        st = sum(r.get("time/step", 0) for r in rs) / len(rs)
        fmt = lambda p: f"{p[0]:.3f} -> {p[1]:.3f}" if p else "-"  # noqa: E731
        lines.append(f"{stage:<24} {len(rs):>5} {fmt(rw):>20} {fmt(ac):>22} {st:>7.1f}")
    lines.append("(first/last = mean of the first/last 5 steps of each stage)")
    return "\n".join(lines)


def plot_curves(out_dir: Path, png: Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(out_dir) if not r.get("final")]
    png = Path(png or Path(out_dir) / "curves.png")
    keys = ["reward/mean", "reward/accuracy", "reward/last_number", "reward/format", "response_length/mean"]
    keys = [k for k in keys if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4.2 * max(1, len(keys)), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for stage in dict.fromkeys(r["stage"] for r in rows):
            pts = [
                (r["global_step"], r[key])
                for r in rows
                if r["stage"] == stage and r.get(key) is not None and "global_step" in r
            ]
            if pts:
                ax.plot(*zip(*pts), label=stage, lw=1.2)
        ax.set_title(key)
        ax.set_xlabel("step (whole curriculum)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def write_report(out_dir: Path, html: Path | None = None, watch: float | None = None) -> Path:
    """Write OUTPUT/report.html (or `html`) for the run in `out_dir`; returns its path."""
    from phaserl.report.data import run_payload
    from phaserl.report.page import write_page

    payload = run_payload(out_dir, watch=watch)
    payload["generated"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return write_page(payload, Path(html or Path(out_dir) / "report.html"))


def watch_report(
    out_dir: Path, seconds: float, echo=print, html: Path | None = None, rounds: int | None = None
) -> Path:
    """Rewrite the report every `seconds` until interrupted (or `rounds` times); the page reloads itself."""
    done = 0
    while True:
        path = write_report(out_dir, html, watch=seconds)
        echo(f"{datetime.now().strftime('%H:%M:%S')} report: {path}")
        done += 1
        if rounds is not None and done >= rounds:
            return path
        time.sleep(seconds)
