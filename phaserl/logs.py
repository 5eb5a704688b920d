"""Run logs: one metrics.jsonl for the whole curriculum, tensorboard, optional wandb, sampled completions."""

from __future__ import annotations

import json
import os
from pathlib import Path


class MetricsLog:
    """Appends one JSON object per step to OUTPUT/metrics.jsonl (flushed at once: nothing lost on a crash)."""

    def __init__(self, out_dir: Path, *, tensorboard: bool = False, wandb: bool = False, run_name: str = "run",
                 enabled: bool = True, config: dict | None = None):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        self.wandb = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.out_dir / "tb"))
            except ImportError:
                print("tensorboard is not installed; skipping tensorboard logs")
        if wandb:
            import wandb as wb  # optional extra

            self.wandb = wb.init(project="phaserl", name=run_name, config=config or {}, resume="allow")

    def truncate_after(self, stage: int, step: int) -> None:
        """On resume: drop rows written after the checkpoint we resume from (they will be redone)."""
        if not self.enabled or not self.path.exists():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            s = row.get("stage_index", 0)
            if s < stage or (s == stage and row.get("step", 0) <= step):
                keep.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(x + "\n" for x in keep))
        os.replace(tmp, self.path)

    def log(self, row: dict, global_step: int) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "stage_index"):
                    self.tb.add_scalar(k, v, global_step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in row.items() if isinstance(v, (int, float, str))}, step=global_step)

    def samples(self, stage_dir: str, step: int, rows: list[dict]) -> None:
        if not self.enabled or not rows:
            return
        d = self.out_dir / "samples"
        d.mkdir(exist_ok=True)
        with open(d / f"{stage_dir}.jsonl", "a") as f:
            for r in rows:
                f.write(json.dumps({"step": step, **r}) + "\n")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def read_metrics(out_dir: Path) -> list[dict]:
    path = Path(out_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows
