"""The run report (OUTPUT/report.html) and the eval page, without a browser: sample rows, step metrics,
tensorboard's and wandb's sample tables, the page's data, its size budget, the CLI. The pages themselves are
checked in headless Chromium by tests/report/test_report_browser.py, on this module's scripted runs.

The scripted runs drive the real logging code (MetricsLog, sample_rows) with scripted rollouts of a 2-stage
run, and the real eval runner with a scripted engine."""

from __future__ import annotations

import base64
import json
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from phaserl.cli import app
from phaserl.collect import Rollouts
from phaserl.data.generators import arithmetic, arithmetic_vl
from phaserl.data.render import render
from phaserl.logs import MetricsLog, samples_markdown
from phaserl.report import write_report
from phaserl.report.data import bisection_order, load_samples, run_payload
from phaserl.samples import sample_rows
from phaserl.stats import length_quantiles, step_metrics, zero_var_share
from phaserl.types import Completions, RewardOutput

ROOT = Path(__file__).resolve().parents[2]
FIX_EVAL = ROOT / "tests" / "fixtures" / "eval"


# --- a scripted 2-stage run through the real logging code ---------------------------------------------


def scripted_rollouts(examples, view: str, G: int, rng: random.Random) -> Rollouts:
    """G completions per example: right or wrong answers, some cut off before </think> (truncated)."""
    prompts = [render(ex, view, "think_answer") for ex in examples]
    texts, acc, fmt, trunc = [], [], [], []
    for ex in examples:
        for _ in range(G):
            if rng.random() < 0.2:
                texts.append(f"<think>{ex.question} hmm")
                trunc.append(True)
                fmt.append(0.0)
                acc.append(0.0)
                continue
            right = rng.random() < 0.5
            texts.append(
                f"<think>add the digits</think><answer>{ex.answer if right else int(ex.answer) + 1}</answer>"
            )
            trunc.append(False)
            fmt.append(1.0)
            acc.append(1.0 if right else 0.0)
    N = len(texts)
    c = Completions(
        prompt_ids=[[1]] * N,
        completion_ids=[[2] * (4 + i % 5) for i in range(N)],
        texts=texts,
        logp=[torch.zeros(1)] * N,
        truncated=trunc,
    )
    return Rollouts(
        examples=list(examples),
        prompts=prompts,
        completions=c,
        G=G,
        rewards=RewardOutput(
            total=[0.5 * f + a for f, a in zip(fmt, acc)], components={"format": fmt, "accuracy": acc}
        ),
    )


def scripted_run(out: Path, steps: int = 3, B: int = 2, G: int = 3, seed: int = 0) -> Path:
    """Stages `text` (text view) and `image` (image+caption view), every completion logged as a sample."""
    rng = random.Random(seed)
    log = MetricsLog(out, tensorboard=True)
    stages = [
        ("text", "text", arithmetic(n=32, seed=1)),
        ("image", "image+caption", arithmetic_vl(n=32, seed=2, image_size=[56, 56])),
    ]
    gs = 0
    for si, (name, view, examples) in enumerate(stages):
        for step in range(1, steps + 1):
            gs += 1
            r = scripted_rollouts([examples[(step * B + b) % len(examples)] for b in range(B)], view, G, rng)
            row = {
                "stage": name,
                "stage_index": si,
                "step": step,
                "global_step": gs,
                "reward/mean": sum(r.rewards.total) / len(r.rewards.total),
                "reward/accuracy": sum(r.rewards.components["accuracy"]) / len(r.rewards.total),
                "response_length/mean": 6.0,
                "response_length/p10": 4.0,
                "response_length/p90": 8.0,
                "clip_frac": 0.01 * step,
                "kl": 0.001 * gs,
                "entropy/mean": 2.0 - 0.1 * gs,
                "groups/zero_var_frac": 0.5,
                "tokens_per_s": 50.0,
                "time/generate": 1.0,
                "time/step": 2.0,
            }
            if step == steps:
                row["eval/text/accuracy"] = 0.25 * (si + 1)
            log.log(row, gs)
            log.samples(f"{si + 1}-{name}", step, sample_rows(r, B * G))
    log.close()
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return scripted_run(tmp_path_factory.mktemp("report") / "run")


# --- sample rows, step metrics, logs --------------------------------------------------------------------


def test_sample_rows_carry_what_the_browser_shows():
    ex = arithmetic_vl(n=1, seed=3, image_size=[56, 56])[0]
    r = scripted_rollouts([ex], "image+caption", 2, random.Random(1))
    r.completions.texts = ["<think>a</think><answer>\\boxed{41}</answer>", "<think>never closed"]
    r.rewards.components = {"format": [1.0, 0.0], "accuracy": [1.0, 0.0]}
    r.completions.truncated = [False, True]
    r.completions.entropy = [0.5, 1.25]  # what engines that report entropy add (None otherwise)
    rows = sample_rows(r, 5)
    assert len(rows) == 2  # k is capped by N
    a, b = rows
    assert a["view"] == "image+caption" and a["caption"] == ex.caption and "<image>" in a["prompt"]
    assert len(a["images"]) == 1 and a["images"][0].startswith("data:image/jpeg;base64,")
    assert a["extracted"] == "41" and b["extracted"] is None  # the accuracy reward's extractor
    assert a["answer"] == ex.answer and a["correct"] is True and b["correct"] is False
    assert b["truncated"] is True and a["truncated"] is False
    assert a["reward/format"] == 1.0 and b["entropy"] == 1.25
    text = scripted_rollouts([ex], "text", 1, random.Random(1))
    text.rewards.components = {"last_number": [1.0]}  # the demo's reward: it says whether the answer is right
    text = sample_rows(text, 1)[0]
    assert (
        text["view"] == "text"
        and text["images"] == []
        and text["caption"] is None
        and text["correct"] is True
    )


def test_zero_variance_share_and_length_quantiles():
    exs = arithmetic(n=3, seed=0)
    r = scripted_rollouts(exs, "text", 2, random.Random(0))
    # groups: (1, 1) equal, (0, 1) varied, (0, 0) equal -> 2 of 3 without dynamic sampling
    r.rewards.components = {"accuracy": [1.0, 1.0, 0.0, 1.0, 0.0, 0.0], "format": [1.0] * 6}
    assert zero_var_share(r, dynamic_sampling=False) == pytest.approx(2 / 3)
    # dynamic sampling dropped 5 groups, kept 1 varied and topped up 2 equal ones: 5 of 6 generated were equal
    r.dropped_groups = 5
    assert zero_var_share(r, dynamic_sampling=True) == pytest.approx(5 / 6)
    # None (n/a) in every row of a group counts as equal; None beside a number does not
    r.rewards.components = {"accuracy": [None, None, None, 1.0, 0.0, 0.0]}
    assert zero_var_share(r, dynamic_sampling=False) == pytest.approx(2 / 3)
    q = length_quantiles(list(range(1, 11)))  # nearest rank over 1..10
    assert q == {
        "response_length/min": 1.0,
        "response_length/p10": 2.0,
        "response_length/p50": 6.0,
        "response_length/p90": 10.0,
    }
    assert length_quantiles([]) == {}


def _step_row(r):
    stage = SimpleNamespace(name="text", index=0, algo=SimpleNamespace(dynamic_sampling=False))
    acc = SimpleNamespace(num_processes=1)
    return step_metrics(stage, 1, r, torch.zeros(len(r.completions)), {"time/update": 0.1}, 0.0, 1.0, acc)


def test_step_metrics_log_entropy_only_when_the_engine_reports_it():
    r = scripted_rollouts(arithmetic(n=2, seed=0), "text", 2, random.Random(0))
    row = _step_row(r)
    assert "entropy/mean" not in row and "groups/zero_var_frac" in row and "response_length/p90" in row
    r.completions.entropy = [1.0, 2.0, 3.0, 4.0]
    assert _step_row(r)["entropy/mean"] == pytest.approx(2.5)


def test_tensorboard_gets_the_sample_table(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    texts = acc.Tensors("samples/2-image/text_summary")
    assert [t.step for t in texts] == [4, 5, 6]  # global steps of stage 2
    table = make_ndarray(texts[0].tensor_proto).item().decode()
    first = [json.loads(x) for x in (run_dir / "samples/2-image.jsonl").read_text().splitlines()][0]
    assert table.startswith("| stage | step | id |") and first["id"] in table and "reward/accuracy" in table
    assert "entropy/mean" in acc.Tags()["scalars"]
    md = samples_markdown([{"completion": "a|b\nc" + "x" * 400, "reward/format": 1.0}])
    assert "a\\|b c" in md and "[...]" in md  # pipes escaped, newlines flattened, long cells cut


def test_samples_keep_thumbnails_as_files_and_a_resume_cuts_redone_steps(tmp_path):
    out = scripted_run(tmp_path / "run", steps=3)
    rows = [json.loads(x) for x in (out / "samples/2-image.jsonl").read_text().splitlines()]
    assert all(r["stage"] == "2-image" for r in rows)
    assert all(p.startswith("thumbs/") and (out / "samples" / p).exists() for r in rows for p in r["images"])
    MetricsLog(out).truncate_after(stage=1, step=1)  # resume stage 2 from its checkpoint at step 1
    rows = [json.loads(x) for x in (out / "samples/2-image.jsonl").read_text().splitlines()]
    assert {r["step"] for r in rows} == {1}
    assert len((out / "samples/1-text.jsonl").read_text().splitlines()) == 18  # earlier stage untouched


def test_wandb_gets_the_same_metrics_and_a_sample_table(tmp_path, monkeypatch):
    """wandb is an optional extra (not installed here): a stand-in module records what MetricsLog sends."""
    logged = []

    class Table:
        def __init__(self, columns, data):
            self.columns, self.data = columns, data

    run = SimpleNamespace(log=lambda d, step: logged.append((step, d)), finish=lambda: None)
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(init=lambda **kw: run, Table=Table))
    log = MetricsLog(tmp_path, wandb=True)
    log.log({"stage": "text", "step": 1, "reward/mean": 0.5}, 7)
    log.samples(
        "1-text", 1, [{"id": "a", "completion": "<answer>3</answer>", "correct": True, "reward/format": 1.0}]
    )
    log.close()
    (s1, metrics), (s2, table) = logged
    assert s1 == s2 == 7 and metrics["reward/mean"] == 0.5
    t = table["samples/1-text"]
    assert t.columns == ["stage", "step", "id", "completion", "correct", "reward/format"]
    assert t.data == [["1-text", 1, "a", "<answer>3</answer>", True, 1.0]]


def test_rows_logged_before_samples_py_still_show(tmp_path):
    """Older runs' rows have no stage, view or correct: the stage comes from the file, correct from accuracy."""
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples/1-text.jsonl").write_text(
        json.dumps(
            {
                "step": 1,
                "id": "x",
                "prompt": "1+1?",
                "answer": "2",
                "completion": "3",
                "reward": 0.0,
                "reward/accuracy": 0.0,
            }
        )
        + "\n"
        + '{"step": 2, "id": "torn'
    )
    rows = load_samples(tmp_path)["rows"]
    assert len(rows) == 1 and rows[0]["group"] == "1-text" and rows[0]["correct"] is False


def test_watch_rewrites_the_page_that_reloads_itself(run_dir, tmp_path):
    from phaserl.report import watch_report

    lines = []
    path = watch_report(run_dir, 0.01, echo=lines.append, html=tmp_path / "w.html", rounds=2)
    assert len(lines) == 2 and str(path) in lines[-1]
    assert '<meta http-equiv="refresh" content="0">' not in path.read_text()  # whole seconds, at least 1
    assert '<meta http-equiv="refresh" content="' in path.read_text()


# --- the payload and the page ----------------------------------------------------------------------------


def test_run_payload_has_curves_eval_and_every_sample(run_dir):
    p = run_payload(run_dir)
    titles = [panel["title"] for panel in p["panels"]]
    for want in (
        "reward (total)",
        "accuracy",
        "clip fraction",
        "KL to reference",
        "entropy (mean per token)",
        "share of groups with zero reward variance",
        "generated tokens / s",
        "time per phase (s)",
    ):
        assert want in titles, want
    length = next(panel for panel in p["panels"] if panel["title"] == "response length (tokens)")
    assert length["band"] == ["response_length/p10", "response_length/p90"]
    assert "format" not in titles  # never logged here: absent, not an error
    assert [s["name"] for s in p["stages"]] == ["text", "image"]
    assert p["stages"][1]["first_global_step"] == 4 and p["stages"][1]["accuracy_key"] == "reward/accuracy"
    assert p["series"]["global_step"] == [1, 2, 3, 4, 5, 6]
    assert p["eval"]["keys"] == ["eval/text/accuracy"] and [r["global_step"] for r in p["eval"]["rows"]] == [
        3,
        6,
    ]
    s = p["samples"]
    assert s["total"] == s["shown"] == 36 and s["note"] == "all 36 logged samples"
    assert len(s["thumbs"]) >= 1 and all(u.startswith("data:image/") for u in s["thumbs"].values())
    image_rows = [r for r in s["rows"] if r["group"] == "2-image"]
    assert all(r["caption"] and r["images"] for r in image_rows)


def test_report_html_is_self_contained(run_dir):
    path = write_report(run_dir)
    html = path.read_text()
    assert path == run_dir / "report.html"
    assert "<script src" not in html and "<link" not in html and "@import" not in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    payload = json.loads(html.split('<script id="payload" type="application/json">')[1].split("</script>")[0])
    assert payload["kind"] == "run" and payload["samples"]["shown"] == 36


def test_bisection_order_spreads_any_prefix():
    assert bisection_order(1) == [0]
    assert bisection_order(5) == [4, 0, 2, 1, 3]
    assert sorted(bisection_order(100)) == list(range(100))


def test_a_thousand_step_run_with_100k_samples_stays_under_20_mb(tmp_path):
    out = tmp_path / "big"
    sdir = out / "samples"
    (sdir / "thumbs").mkdir(parents=True)
    thumb = base64.b64decode(
        sample_rows(
            scripted_rollouts(arithmetic_vl(n=1, seed=0, image_size=[56, 56]), "image", 1, random.Random(0)),
            1,
        )[0]["images"][0].split(",")[1]
    )
    for i in range(300):  # 300 distinct images (bytes differ), each drawn at many steps
        (sdir / "thumbs" / f"{i:04d}.jpg").write_bytes(thumb + bytes([i % 256, i // 256]))
    completion = "<think>" + "let me think about this carefully. " * 40 + "</think><answer>7</answer>"
    metrics = []
    for si, name in enumerate(["1-text", "2-image"]):
        with open(sdir / f"{name}.jsonl", "w") as f:
            for step in range(1, 501):
                gs = si * 500 + step
                metrics.append(
                    {
                        "stage": name[2:],
                        "stage_index": si,
                        "step": step,
                        "global_step": gs,
                        "reward/mean": step / 500,
                    }
                )
                for j in range(100):
                    img = [f"thumbs/{(step * 7 + j) % 300:04d}.jpg"] if si else []
                    f.write(
                        json.dumps(
                            {
                                "stage": name,
                                "step": step,
                                "id": f"ex-{j}",
                                "prompt": f"What is {j} + 3?",
                                "images": img,
                                "completion": completion,
                                "extracted": "7",
                                "answer": "7",
                                "correct": j % 2 == 0,
                                "truncated": False,
                                "reward": 1.0,
                                "reward/accuracy": float(j % 2 == 0),
                            }
                        )
                        + "\n"
                    )
    (out / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    t0 = time.perf_counter()
    size = write_report(out).stat().st_size
    seconds = time.perf_counter() - t0
    print(f"1000 steps, 100000 samples: report {size / 1e6:.1f} MB in {seconds:.1f}s")
    assert size < 20_000_000
    s = load_samples(out)
    assert s["total"] == 100_000 and 1_000 < s["shown"] < 100_000 and "of 100000 logged samples" in s["note"]
    for name in ("1-text", "2-image"):  # both stages covered, first and last steps included
        steps = {r["step"] for r in s["rows"] if r["group"] == name}
        assert {1, 500} <= steps and len(steps) > 10


def test_cli_report_prints_the_summary_and_the_page(run_dir, tmp_path):
    res = CliRunner().invoke(app, ["report", str(run_dir), "--html", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert "reward first->last" in res.output and (run_dir / "curves.png").exists()
    assert (
        res.output.strip().splitlines()[-1] == f"report: {tmp_path / 'r.html'}"
    )  # what `make demo` ends with
    assert (tmp_path / "r.html").stat().st_size > 10_000
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no such folder" in res.output


def scripted_eval(out: Path) -> Path:
    """`phaserl eval` of MathVision and MathVista testmini fixtures (MathVista without its images, text-only)."""
    from scripted_completions import ANSWERS, ScriptedEngine

    from phaserl.eval.runner import eval_command

    engine = ScriptedEngine({**ANSWERS, "": ["\\boxed{1}"]})  # MathVista items: all answered 1
    eval_command(
        "scripted",
        "mathvision:testmini,mathvista:testmini",
        out,
        data_dir=FIX_EVAL,
        missing_images="text",
        rollout_engine=engine,
        progress=False,
        echo=lambda s: None,
    )
    return out


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory) -> Path:
    return scripted_eval(tmp_path_factory.mktemp("eval") / "ev")


def test_eval_page_payload(eval_dir):
    from phaserl.eval.report import eval_payload, write_eval_report

    p = eval_payload(eval_dir, data_dir=FIX_EVAL)
    names = [b["name"] for b in p["benchmarks"]]
    assert names == ["mathvision:testmini", "mathvista:testmini"]
    vista = p["benchmarks"][1]
    assert {"question_type", "skills"} <= set(vista["breakdown"])  # MathVista's question and skill types
    rows = p["samples"]["rows"]
    assert len(rows) == 12 and p["samples"]["note"].startswith("all 12 responses")
    v = [r for r in rows if r["group"] == "mathvista:testmini"]
    assert all(r["gold"] is not None for r in v) and any(
        "question_type: multi_choice" in r["tags"] for r in v
    )
    assert all(r["images"] for r in rows if r["group"] == "mathvision:testmini")
    res = CliRunner().invoke(app, ["report", str(eval_dir), "--data-dir", str(FIX_EVAL)])
    assert res.exit_code == 0 and f"report: {eval_dir / 'report.html'}" in res.output, res.output
    assert write_eval_report(eval_dir, data_dir=FIX_EVAL).stat().st_size > 10_000


def test_phaserl_eval_writes_its_page(tmp_path, monkeypatch):
    """The real `phaserl eval` command, with a scripted engine in place of a model."""
    from scripted_completions import ANSWERS, ScriptedEngine

    import phaserl.eval.runner as runner

    monkeypatch.setattr(runner, "_load_engine", lambda *a, **k: (ScriptedEngine(ANSWERS), True))
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            "x",
            "--benchmarks",
            "mathvision:testmini",
            "--output",
            str(tmp_path),
            "--limit",
            "3",
            "--data-dir",
            str(FIX_EVAL),
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == f"report: {tmp_path / 'report.html'}"
    html = (tmp_path / "report.html").read_text()
    assert '"kind":"eval"' in html and '"gold":"61"' in html  # the daisy item, gold from the fixture data


def test_samples_of_a_resumed_run_count_each_step_once(tmp_path):
    """Runs logged before MetricsLog cut redone samples: steps 1-5, a crash, a resume from step 2's checkpoint
    that redid steps 3-4 and crashed again. Step 5 of the first attempt is gone; 3 and 4 are the new rows."""
    lines = [{"step": s, "id": f"first-{s}"} for s in range(1, 6)] + [
        {"step": s, "id": f"again-{s}"} for s in (3, 4)
    ]
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples/1-text.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    s = load_samples(tmp_path)
    assert [(r["step"], r["id"]) for r in s["rows"]] == [
        (1, "first-1"),
        (2, "first-2"),
        (3, "again-3"),
        (4, "again-4"),
    ]
    assert s["total"] == 4


def test_hostile_text_and_nan_survive_the_page(tmp_path):
    """A completion may contain `</script>`; a metric may be NaN (JSON has none): the payload still parses back."""
    log = MetricsLog(tmp_path)
    log.log(
        {"stage": "s", "stage_index": 0, "step": 1, "global_step": 1, "reward/mean": float("nan"), "kl": 0.5},
        1,
    )
    evil = "</script><script>alert(1)</script> <!-- \u2028"
    log.samples("1-s", 1, [{"id": "x", "prompt": evil, "completion": evil, "correct": False}])
    html = write_report(tmp_path).read_text()
    payload = json.loads(html.split('<script id="payload" type="application/json">')[1].split("</script>")[0])
    row = payload["samples"]["rows"][0]
    assert row["completion"] == evil and payload["samples"]["strings"][row["prompt"]] == evil
    assert payload["series"]["values"]["reward/mean"] == [None] and payload["series"]["values"]["kl"] == [0.5]
