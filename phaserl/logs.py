"""Run logs: one metrics.jsonl for the whole curriculum, tensorboard, optional wandb, sampled completions."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path


class MetricsLog:
    """Appends one JSON object per step to OUTPUT/metrics.jsonl (flushed at once: nothing lost on a crash)."""

    def __init__(
        self,
        out_dir: Path,
        *,
        tensorboard: bool = False,
        wandb: bool = False,
        run_name: str = "run",
        enabled: bool = True,
        config: dict | None = None,
    ):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        self.wandb = None
        self._last_global_step = 0
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
        self._truncate_samples(stage, step)

    def _truncate_samples(self, stage: int, step: int) -> None:
        """The same cut for samples/<index+1>-<name>.jsonl, so the report shows each redone step once."""
        for f in sorted((self.out_dir / "samples").glob("*.jsonl")):
            head = f.name.split("-", 1)[0]
            if not head.isdigit() or int(head) - 1 < stage:
                continue
            keep = []
            if int(head) - 1 == stage:
                for line in f.read_text().splitlines():
                    try:
                        if json.loads(line).get("step", 0) <= step:
                            keep.append(line)
                    except json.JSONDecodeError:
                        continue
            tmp = f.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(x + "\n" for x in keep))
            os.replace(tmp, f)

    def log(self, row: dict, global_step: int) -> None:
        if not self.enabled:
            return
        self._last_global_step = global_step
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
        if self.tb is not None:
            for k, v in row.items():
                if (
                    isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and k not in ("step", "stage_index")
                ):
                    self.tb.add_scalar(k, v, global_step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(
                {k: v for k, v in row.items() if isinstance(v, (int, float, str))}, step=global_step
            )

    def samples(self, stage_dir: str, step: int, rows: list[dict], global_step: int | None = None) -> None:
        """Append rows to OUTPUT/samples/<stage_dir>.jsonl (tagged with stage and step); the same completions
        go to tensorboard as a markdown table and to wandb as a Table, at `global_step` (default: the last
        metrics row's)."""
        if not self.enabled or not rows:
            return
        d = self.out_dir / "samples"
        d.mkdir(exist_ok=True)
        rows = [{"stage": stage_dir, "step": step, **r} for r in rows]
        for r in rows:
            if r.get("images"):
                r["images"] = [store_thumbnail(d, uri) for uri in r["images"]]
        with open(d / f"{stage_dir}.jsonl", "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        gs = self._last_global_step if global_step is None else global_step
        if self.tb is not None:
            self.tb.add_text(f"samples/{stage_dir}", samples_markdown(rows), gs)
            self.tb.flush()
        if self.wandb is not None:
            import wandb as wb

            cols = table_columns(rows)
            table = wb.Table(columns=cols, data=[[_cell(r.get(c)) for c in cols] for r in rows])
            self.wandb.log({f"samples/{stage_dir}": table}, step=gs)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def store_thumbnail(samples_dir: Path, uri: str) -> str:
    """Write a data-URI thumbnail once to samples/thumbs/<sha1>.<ext>; returns that path relative to samples/.

    Rows then carry a short path instead of the bytes: an example drawn at many steps costs one file."""
    if not uri.startswith("data:"):
        return uri
    head, _, b64 = uri.partition(",")
    ext = "png" if "png" in head else "jpg"
    raw = base64.b64decode(b64)
    rel = f"thumbs/{hashlib.sha1(raw).hexdigest()[:16]}.{ext}"
    path = samples_dir / rel
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(raw)
    return rel


SAMPLE_COLUMNS = (
    "stage",
    "step",
    "id",
    "view",
    "prompt",
    "completion",
    "extracted",
    "answer",
    "correct",
    "truncated",
    "reward",
)
MARKDOWN_CELL_CHARS = 300  # tensorboard's text plugin renders every cell; long completions are cut


def table_columns(rows: list[dict]) -> list[str]:
    """The sample-table columns: the fixed ones present, then each reward component."""
    present = {k for r in rows for k in r}
    comps = sorted(k for k in present if k.startswith("reward/"))
    return [c for c in SAMPLE_COLUMNS if c in present] + comps


def _cell(v):
    if isinstance(v, float):
        return round(v, 4)
    return v if isinstance(v, (int, str, bool)) or v is None else json.dumps(v)


def _md(v, limit: int = MARKDOWN_CELL_CHARS) -> str:
    text = "" if v is None else str(_cell(v))
    if len(text) > limit:
        text = text[:limit] + " [...]"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def samples_markdown(rows: list[dict]) -> str:
    """A markdown table of sample completions (one row each) for tensorboard's text plugin."""
    cols = table_columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


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
