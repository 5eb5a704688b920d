"""Does text-first curriculum RL beat direct multimodal RL? Infi-MMR's claim, in miniature, on a CPU.

Arms, with equal total RL steps (B prompts x G samples each) and the same seeds:
  infi_mmr  three phases: text -> image+caption -> image     (Infi-MMR)
  lmm_r1    two stages:   text -> image                      (LMM-R1)
  direct    image only, the whole budget                     (direct multimodal RL)
  base      the mini VLM as built, no RL (greedy decoding: one evaluation, no seed to vary)
Every arm's final model answers the same held-out test problems greedily in all three views; the table
reports accuracy (the response's last number is the answer: the `last_number` reward, which a restated
problem does not pass) and format rate (responses that are just the number, what the `number` template asks
for) as mean +- std over seeds. The plot shows greedy accuracy on a fixed test subset over RL steps, per
view, from each run's metrics.jsonl (step 0 is the base model).

    .venv/bin/python benchmarks/curriculum_mini.py [--quick] [--seeds 3] [--output DIR] [--mini-vlm DIR]

OUTPUT/results.md, results.json, curves.png; one run folder per arm and seed in OUTPUT/runs/. Rerunning the
same command resumes: finished arms are skipped, an interrupted one continues from its last checkpoint
(run_curriculum resumes itself). Without --mini-vlm the default mini VLM is built once and cached in
$PHASERL_CACHE/models/minivlm-default-<hash> (67 s on an idle 2-core CPU; the build caps itself at 12 min).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from phaserl.data.schema import VIEWS
from phaserl.minivlm.data import ANSWER_ONLY, GENERATOR

ARM_VIEWS: dict[str, tuple[str, ...]] = {
    "infi_mmr": ("text", "image+caption", "image"),
    "lmm_r1": ("text", "image"),
    "direct": ("image",),
    "base": (),
}
ARMS = tuple(ARM_VIEWS)
STAGE_NAMES = {"text": "text", "image+caption": "image-caption", "image": "image"}
TRAIN_SEEDS = {"text": 1, "image+caption": 2, "image": 3}  # each view's stage draws its own train problems
TEMPLATE = "number"  # "... Answer with just the number.": short answers fit a 135M model and a CPU budget


@dataclass(frozen=True)
class Settings:
    total_steps: int = 24  # RL steps per trained arm, split equally over its stages
    prompts_per_step: int = 4  # B
    group_size: int = 8  # G
    max_new_tokens: int = 48  # longest completion (the base model explains before it answers)
    temperature: float = 1.0  # rollout sampling temperature
    lr: float = 1e-5  # AdamW learning rate (all weights train, vision side included)
    n_train: int = 200  # train problems generated per stage (more than steps * B: no repeats)
    n_curve: int = 20  # test problems in the periodic evaluation (the curves), each in 3 views
    n_final: int = 100  # test problems in the final evaluation (the table), each in 3 views
    eval_every: int = 4  # periodic evaluation every this many steps of a stage (stage ends always)
    checkpoint_every: int = 4  # resumable checkpoint interval (steps)
    # Reward weight of the answer-only format check (last_number weighs 1). 0: its rate is logged and reported,
    # not rewarded. At 0.1 a pilot run's captioned stage learned to answer with a bare (mostly wrong) number:
    # format 0 -> 100%, accuracy 20 -> 0% on the curve problems. Where correct answers are rare the format is
    # the only variance inside a GRPO group, and a 135M model that stops working things out gets them wrong.
    format_weight: float = 0.0


# About 90 minutes on an idle 2-core CPU (9 trained runs, 10 final evaluations); docs/curriculum_mini.md.
FULL = Settings()
QUICK = replace(
    FULL, total_steps=6, group_size=4, n_train=40, n_curve=12, n_final=30, eval_every=0, checkpoint_every=3
)


# ---------------------------------------------------------------- planning


def split_steps(total: int, parts: int) -> list[int]:
    """`total` steps over `parts` stages as equally as possible (earlier stages take the remainder)."""
    if parts < 1 or total < parts:
        raise ValueError(f"cannot split {total} steps over {parts} stages (each needs at least one)")
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def arm_steps(arm: str, settings: Settings) -> list[int]:
    views = ARM_VIEWS[arm]
    return split_steps(settings.total_steps, len(views)) if views else []


def mini_spec(split: str, n: int, seed: int, *, limit: int | None = None) -> dict:
    spec = {"generator": GENERATOR, "generator_args": {"n": n, "split": split, "seed": seed}}
    if limit is not None:  # also makes the curve and final subsets distinct cache keys in train_eval
        spec["limit"] = limit
    return spec


def arm_recipe(arm: str, settings: Settings, seed: int, model: str) -> dict:
    """The recipe (as a dict for recipe_from_dict) of one trained arm and seed."""
    s = settings
    stages = []
    for k, (view, steps) in enumerate(zip(ARM_VIEWS[arm], arm_steps(arm, s))):
        stages.append(
            {
                "name": STAGE_NAMES[view],
                "view": view,
                "steps": steps,
                "data": [mini_spec("train", s.n_train, TRAIN_SEEDS[view])],
                # a later stage starts from the previous final/, which was just evaluated
                "eval": {"at_start": k == 0},
            }
        )
    if not stages:
        raise ValueError(f"arm {arm!r} has no RL stages")
    return {
        "name": f"mini-{arm}-seed{seed}",
        "seed": seed,
        "model": {"name": model},
        "template": TEMPLATE,
        "rewards": [{"name": "last_number", "weight": 1.0}, {"name": ANSWER_ONLY, "weight": s.format_weight}],
        "prompts_per_step": s.prompts_per_step,
        "rollout": {
            "group_size": s.group_size,
            "max_new_tokens": s.max_new_tokens,
            "temperature": s.temperature,
        },
        # micro-batches of 8 keep the update's activations to about a GB (several runs share this machine)
        "algo": {"advantage": "grpo", "kl_coef": 0.0, "micro_batch_size": 8},
        "optim": {"lr": s.lr, "max_grad_norm": 1.0},
        "checkpoint": {"every": s.checkpoint_every, "keep_last": 1},
        "eval": {
            "every": s.eval_every,
            "limit": s.n_curve,
            "views": list(VIEWS),
            "data": [mini_spec("test", s.n_curve, 0, limit=s.n_curve)],
        },
        "logging": {"tensorboard": False, "samples_per_step": 4, "progress": False},
        "stages": stages,
    }


def run_name(arm: str, seed: int) -> str:
    return "base" if arm == "base" else f"{arm}-seed{seed}"


def plan_lines(settings: Settings, arms: tuple[str, ...], seeds: list[int]) -> list[str]:
    """What will run, for the log and the results file."""
    s = settings
    lines = [
        f"{s.total_steps} RL steps per trained arm, B={s.prompts_per_step} G={s.group_size} "
        f"({s.total_steps * s.prompts_per_step * s.group_size} samples), seeds {seeds}; "
        f"final eval on {s.n_final} test problems x {len(VIEWS)} views, curves on {s.n_curve}"
    ]
    for arm in arms:
        steps = arm_steps(arm, s)
        desc = " -> ".join(f"{v} ({n})" for v, n in zip(ARM_VIEWS[arm], steps)) or "no RL"
        lines.append(f"  {arm:9s} {desc}")
    return lines


# ---------------------------------------------------------------- running


def default_mini_vlm(log: Callable[[str], None] = print) -> Path:
    """The default mini VLM, built once into the cache (atomically: a crash never leaves half a folder).

    The folder name carries a hash of the builder's default arguments and of the tasks' version, so changed
    defaults or problems build anew."""
    import hashlib
    import inspect

    from phaserl.minivlm.build import build_mini_vlm
    from phaserl.minivlm.tasks import TASKS_VERSION
    from phaserl.models import cache_dir

    defaults = {
        k: repr(v.default)
        for k, v in inspect.signature(build_mini_vlm).parameters.items()
        if v.default is not inspect.Parameter.empty and k != "log"
    }
    defaults["tasks_version"] = TASKS_VERSION  # the alignment sees train problem images
    digest = hashlib.sha256(json.dumps(defaults, sort_keys=True).encode()).hexdigest()[:8]
    target = cache_dir() / "models" / f"minivlm-default-{digest}"
    if (target / "minivlm.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-minivlm-"))
    try:
        log(f"building the mini VLM (cached in {target})")
        build_mini_vlm(tmp, log=log)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def train_arm(recipe_dict: dict, out_dir: Path) -> Path:
    """Run (or resume) one arm's curriculum; returns the last stage's final/ folder."""
    from phaserl.config import recipe_from_dict
    from phaserl.curriculum import run_curriculum

    return run_curriculum(recipe_from_dict(recipe_dict, recipe_dict["name"]), out_dir)[-1]


def evaluate_model(model_dir: str, recipe_dict: dict, settings: Settings) -> dict:
    """Greedy accuracy and format rate per view on the final test set, through the trainer's own eval path."""
    from phaserl.config import EvalConfig, recipe_from_dict, resolve
    from phaserl.data.sources import DatasetSpec
    from phaserl.models import load_model
    from phaserl.stage_setup import make_engine
    from phaserl.train_eval import evaluate_greedy

    recipe = recipe_from_dict({**recipe_dict, "model": {"name": model_dir}}, recipe_dict["name"])
    spec = DatasetSpec(**mini_spec("test", settings.n_final, 0, limit=settings.n_final))
    stage = resolve(recipe)[-1].model_copy(
        update={"eval": EvalConfig(data=[spec], limit=settings.n_final, views=list(VIEWS))}
    )
    lm = load_model(model_dir)
    lm.tokenizer.padding_side = "left"
    lm.model.eval()
    row = evaluate_greedy(make_engine(stage, lm, lm.model), stage, recipe)
    return {
        view: {
            "accuracy": row.get(f"eval/{view}/last_number"),
            "format": row.get(f"eval/{view}/{ANSWER_ONLY}"),
            "n": row.get(f"eval/{view}/n"),
        }
        for view in VIEWS
    }


def prune_run(run_dir: Path, keep_final: Path | None) -> None:
    """Once an arm is evaluated its resumable checkpoints and intermediate stage weights are not needed."""
    for stage_dir in sorted((run_dir / "stages").glob("*")):
        for child in stage_dir.iterdir():
            if child.name.startswith("checkpoint-") or (child.name == "final" and child != keep_final):
                shutil.rmtree(child, ignore_errors=True)


def check_settings(output: Path, settings: Settings, model: str) -> None:
    """Refuse to mix runs made with other settings or another model into one output folder."""
    want = {"settings": asdict(settings), "model": str(model)}
    path = output / "settings.json"
    if path.exists():
        have = json.loads(path.read_text())
        if have != want:
            raise SystemExit(
                f"{output} holds runs made with other settings or another model:\n  {have}\n"
                f"now:\n  {want}\nuse another --output folder"
            )
    else:
        output.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(want, indent=1) + "\n")


def run_job(job: dict, *, train: Callable = train_arm, evaluate: Callable = evaluate_model) -> dict:
    """One arm and seed: train (not for base), evaluate, write final_eval.json (which marks it done).

    job = {"arm", "seed", "settings" (dict of Settings), "model", "run_dir", "keep_models"}."""
    arm, seed, run_dir = job["arm"], job["seed"], Path(job["run_dir"])
    settings = Settings(**job["settings"])
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe = arm_recipe("direct" if arm == "base" else arm, settings, seed, job["model"])
    start = time.perf_counter()
    final = job["model"] if arm == "base" else train(recipe, run_dir)
    result = {
        "arm": arm,
        "seed": seed,
        "model": str(final),
        "eval": evaluate(str(final), recipe, settings),
        "seconds": round(time.perf_counter() - start, 1),
        "load_average": round(os.getloadavg()[1], 1),
    }  # 5-minute; a timing means little without it
    (run_dir / "final_eval.json").write_text(json.dumps(result, indent=1) + "\n")
    if arm != "base" and not job.get("keep_models"):
        prune_run(run_dir, keep_final=Path(final))
    return result


def run_job_isolated(job: dict) -> dict:
    """run_job in a fresh Python process, so each run's memory (model, optimizer, rollout copy: several GB)
    goes back to the system when it ends and a crash or the OOM killer costs only that run.

    Ctrl-C reaches the child too (same process group) and SIGTERM is forwarded: either way the child saves
    a checkpoint at its next step boundary, and rerunning the command resumes it."""
    run_dir = Path(job["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "job.json"
    path.write_text(json.dumps(job, indent=1) + "\n")
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--job", str(path)])
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    try:
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            code = proc.wait()  # the child is saving its checkpoint
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code != 0:
        raise SystemExit(f"[{run_dir.name}] stopped (exit code {code}); rerun the same command to resume")
    return json.loads((run_dir / "final_eval.json").read_text())


def run_experiment(
    settings: Settings,
    output: Path,
    model: str,
    seeds: list[int],
    arms: tuple[str, ...] = ARMS,
    *,
    job: Callable[[dict], dict] = run_job_isolated,
    keep_models: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Train and evaluate every (arm, seed) not yet done, then write the table and the plot."""
    check_settings(output, settings, model)
    for line in plan_lines(settings, arms, seeds):
        log(line)
    for arm in arms:
        for seed in seeds if arm != "base" else seeds[:1]:
            name = run_name(arm, seed)
            run_dir = output / "runs" / name
            if (run_dir / "final_eval.json").exists():
                log(f"[{name}] done already")
                continue
            log(f"[{name}] starting")
            result = job(
                {
                    "arm": arm,
                    "seed": seed,
                    "settings": asdict(settings),
                    "model": str(model),
                    "run_dir": str(run_dir),
                    "keep_models": keep_models,
                }
            )
            log(f"[{name}] {brief(result['eval'])} ({result['seconds']:.0f}s)")
    return write_report(output, settings, model, seeds, arms)


def brief(evals: dict) -> str:
    return "  ".join(
        f"{v}: acc {e['accuracy']:.3f} fmt {e['format']:.3f}"
        for v, e in evals.items()
        if e.get("accuracy") is not None
    )


# ---------------------------------------------------------------- report


def mean_std(values: list[float]) -> dict:
    """Mean and sample standard deviation (None for fewer than two values)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "values": []}
    std = statistics.stdev(vals) if len(vals) > 1 else None
    return {"mean": statistics.fmean(vals), "std": std, "values": vals}


def collect_results(output: Path, arms: tuple[str, ...], seeds: list[int]) -> dict:
    """{arm: {"seeds": [...], "views": {view: {"accuracy": mean_std, "format": mean_std}}}} of finished runs."""
    table = {}
    for arm in arms:
        runs = []
        for seed in seeds if arm != "base" else seeds[:1]:
            path = output / "runs" / run_name(arm, seed) / "final_eval.json"
            if path.exists():
                runs.append(json.loads(path.read_text()))
        if not runs:
            continue
        views = {
            view: {
                metric: mean_std([r["eval"][view][metric] for r in runs if view in r["eval"]])
                for metric in ("accuracy", "format")
            }
            for view in VIEWS
        }
        table[arm] = {
            "seeds": [r["seed"] for r in runs],
            "views": views,
            "n": {view: runs[0]["eval"].get(view, {}).get("n") for view in VIEWS},
        }
    return table


def fmt_pct(stat: dict) -> str:
    if stat["mean"] is None:
        return "-"
    text = f"{100 * stat['mean']:.1f}"
    return text + (f" ± {100 * stat['std']:.1f}" if stat["std"] is not None else "")


def markdown_table(table: dict, settings: Settings) -> str:
    head = (
        ["arm", "RL stages (steps)", "seeds"]
        + [f"{v} acc %" for v in VIEWS]
        + [f"{v} format %" for v in VIEWS]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, row in table.items():
        stages = " → ".join(f"{v} ({n})" for v, n in zip(ARM_VIEWS[arm], arm_steps(arm, settings))) or "none"
        seeds = str(len(row["seeds"])) + (" (greedy: deterministic)" if arm == "base" else "")
        cells = (
            [arm, stages, seeds]
            + [fmt_pct(row["views"][v]["accuracy"]) for v in VIEWS]
            + [fmt_pct(row["views"][v]["format"]) for v in VIEWS]
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_curve(rows: list[dict]) -> dict[str, dict[int, float]]:
    """{view: {global_step: accuracy}} of one run's eval rows (a step evaluated twice keeps its last row)."""
    curve: dict[str, dict[int, float]] = {view: {} for view in VIEWS}
    for row in rows:
        for view in VIEWS:
            value = row.get(f"eval/{view}/last_number")
            if value is not None and "global_step" in row:
                curve[view][int(row["global_step"])] = float(value)
    return curve


def collect_curves(output: Path, arms: tuple[str, ...], seeds: list[int]) -> dict:
    """{arm: {view: {"steps": [...], "mean": [...], "min": [...], "max": [...]}}} over the seeds' runs."""
    from phaserl.logs import read_metrics

    curves = {}
    for arm in arms:
        if arm == "base":
            continue
        runs = [run_curve(read_metrics(output / "runs" / run_name(arm, seed))) for seed in seeds]
        per_view = {}
        for view in VIEWS:
            steps = sorted({s for run in runs for s in run[view]})
            values = [[run[view][s] for run in runs if s in run[view]] for s in steps]
            if steps:
                per_view[view] = {
                    "steps": steps,
                    "mean": [statistics.fmean(v) for v in values],
                    "min": [min(v) for v in values],
                    "max": [max(v) for v in values],
                    "runs": [len(v) for v in values],
                }
        if per_view:
            curves[arm] = per_view
    return curves


def plot_curves(curves: dict, settings: Settings, path: Path) -> Path | None:
    """One panel per view: greedy accuracy on the curve subset over RL steps, mean over seeds, min-max band."""
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(VIEWS), figsize=(4.2 * len(VIEWS), 3.6), sharey=True)
    for ax, view in zip(axes, VIEWS):
        for arm, per_view in curves.items():
            c = per_view.get(view)
            if c is None:
                continue
            label = f"{arm} ({'/'.join(map(str, arm_steps(arm, settings)))})"
            (line,) = ax.plot(c["steps"], c["mean"], marker="o", markersize=3, label=label)
            ax.fill_between(c["steps"], c["min"], c["max"], color=line.get_color(), alpha=0.15, linewidth=0)
            ends = [sum(arm_steps(arm, settings)[: k + 1]) for k in range(len(ARM_VIEWS[arm]) - 1)]
            for x in ends:  # stage boundaries
                ax.axvline(x, color=line.get_color(), alpha=0.3, linestyle=":", linewidth=1)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(f"evaluated in view: {view}")
        ax.set_xlabel("RL step (step 0 = base model)")
        ax.grid(alpha=0.3)
    top = max((v for per_view in curves.values() for c in per_view.values() for v in c["max"]), default=0)
    axes[0].set_ylim(0, min(1.0, max(0.1, 1.15 * top)))
    axes[0].set_ylabel(f"greedy accuracy ({settings.n_curve} test problems)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    output: Path, settings: Settings, model: str, seeds: list[int], arms: tuple[str, ...]
) -> dict:
    """results.json, results.md and curves.png from whatever runs have finished."""
    table = collect_results(output, arms, seeds)
    curves = collect_curves(output, arms, seeds)
    plot = plot_curves(curves, settings, output / "curves.png")
    perception = None
    info = Path(model) / "minivlm.json"
    if info.exists():
        meta = json.loads(info.read_text())
        perception = {k: meta.get(k) for k in ("perception_accuracy", "problem_char_accuracy")}
    seen = (
        ""
        if not perception or perception["problem_char_accuracy"] is None
        else (
            f" (it reads {100 * perception['problem_char_accuracy']:.1f}% of the characters of test problem images)"
        )
    )
    seconds = sum(
        json.loads(p.read_text()).get("seconds", 0) for p in (output / "runs").glob("*/final_eval.json")
    )
    result = {
        "settings": asdict(settings),
        "model": str(model),
        "perception": perception,
        "seeds": seeds,
        "arms": table,
        "curves": curves,
        "plot": str(plot) if plot else None,
        "run_seconds": round(seconds, 1),
    }
    (output / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    md = [
        "# Curriculum RL in miniature",
        "",
        *plan_lines(settings, arms, seeds),
        "",
        markdown_table(table, settings),
        f"Greedy decoding, mean ± sample std over seeds; format = responses that are just the number. "
        f"Model: {model}{seen}" + f". Runs took {seconds / 60:.0f} min in total.",
        "",
    ]
    if plot:
        md.append(f"![accuracy over RL steps]({plot.name})")
    (output / "results.md").write_text("\n".join(md) + "\n")
    return result


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="the ~15-minute version: fewer steps, 1 seed, small eval"
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds per trained arm (default 3, quick 1)")
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="results folder (default runs/curriculum_mini, quick runs/curriculum_mini_quick)",
    )
    p.add_argument("--mini-vlm", default=None, help="a built mini VLM folder (default: build and cache one)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
    p.add_argument("--total-steps", type=int, default=None, help="override the RL steps per arm")
    p.add_argument("--keep-models", action="store_true", help="keep checkpoints and every stage's weights")
    args = p.parse_args(argv)
    args.arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arms {unknown}; choose from {ARMS}")
    if args.seeds is not None and args.seeds < 1:
        p.error("--seeds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    if argv and argv[0] == "--job":  # one run, in the child process that run_job_isolated started
        return run_job(json.loads(Path(argv[1]).read_text()))
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.total_steps is not None:
        settings = replace(settings, total_steps=args.total_steps)
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    output = args.output or Path("runs") / ("curriculum_mini_quick" if args.quick else "curriculum_mini")
    model = args.mini_vlm or str(default_mini_vlm())
    start = time.perf_counter()
    result = run_experiment(settings, output, model, seeds, args.arms, keep_models=args.keep_models)
    print((output / "results.md").read_text())
    print(f"wall time of this invocation: {(time.perf_counter() - start) / 60:.1f} min; results in {output}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
