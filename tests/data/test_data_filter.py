"""Difficulty filter: exact pass rates with a scripted engine, gold parsing, resume, and a tiny:llama run."""

import json
from pathlib import Path

import pytest
import typer
from scripted_completions import completions_of
from typer.testing import CliRunner

from phaserl.data.tools._io import parse_range
from phaserl.data.tools.filter import filter_command

# question -> (gold, how many of the K=8 samples answer it right)
TABLE = {
    "q-hard": ("1", 0),
    "q-one": ("2", 1),
    "q-half": ("\\frac{1}{2}", 4),
    "q-easy": ("4", 8),
    "q-bad-gold": ("$$", 3),  # the verifier cannot parse this gold
    "q-seven": ("6", 7),
}


class ScriptedEngine:
    """Answers each question right exactly k times out of n; can die after some calls like a killed job."""

    is_vlm = False

    def __init__(self, fail_after: int | None = None):
        self.calls: list[list[str]] = []
        self.fail_after = fail_after

    def generate(self, prompts, params):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("killed")
        questions = [p.messages[-1]["content"] for p in prompts]
        self.calls.append(questions)
        texts = []
        for q in questions:
            gold, k = TABLE[q]
            texts += [f"So the answer is \\boxed{{{gold}}}."] * k + ["I think \\boxed{-17}."] * (params.n - k)
        return completions_of(texts)


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "problems.jsonl"
    path.write_text(
        "".join(json.dumps({"id": q, "question": q, "answer": g}) + "\n" for q, (g, _) in TABLE.items())
    )
    return path


def run(data: Path, out: Path, engine, **kw) -> dict:
    return filter_command("scripted", str(data), str(out), samples=8, engine=engine, log=lambda m: None, **kw)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pass_rates_and_keep_range(data, tmp_path):
    out = tmp_path / "kept.jsonl"
    summary = run(data, out, ScriptedEngine(), batch_size=4)
    scores = {r["id"]: r for r in read(tmp_path / "kept.scores.jsonl")}
    assert {k: v["pass_rate"] for k, v in scores.items()} == {
        "q-hard": 0.0,
        "q-one": 0.125,
        "q-half": 0.5,
        "q-easy": 1.0,
        "q-bad-gold": None,
        "q-seven": 0.875,
    }
    assert scores["q-bad-gold"]["reason"] == "gold unparseable"
    assert scores["q-hard"]["reason"] == "too hard" and scores["q-easy"]["reason"] == "too easy"
    kept = read(out)
    assert [r["id"] for r in kept] == ["q-one", "q-half", "q-seven"]  # input order
    assert kept[1]["meta"]["pass_rate"] == 0.5 and kept[1]["answer"] == "\\frac{1}{2}"
    assert summary["kept"] == 3 and summary["reasons"] == {
        "too hard": 1,
        "in range": 3,
        "too easy": 1,
        "gold unparseable": 1,
    }


def test_bad_gold_is_never_sampled(data, tmp_path):
    engine = ScriptedEngine()
    run(data, tmp_path / "k.jsonl", engine, batch_size=10)
    assert "q-bad-gold" not in [q for call in engine.calls for q in call]


def test_keep_bounds_are_inclusive(data, tmp_path):
    out = tmp_path / "k.jsonl"
    run(data, out, ScriptedEngine(), keep="0.125-0.5")
    assert [r["id"] for r in read(out)] == ["q-one", "q-half"]
    run(data, tmp_path / "all.jsonl", ScriptedEngine(), keep=(0.0, 1.0))
    assert len(read(tmp_path / "all.jsonl")) == 5


def test_resume_after_a_kill(data, tmp_path):
    out = tmp_path / "k.jsonl"
    with pytest.raises(RuntimeError, match="killed"):
        run(data, out, ScriptedEngine(fail_after=1), batch_size=2)
    assert len(read(tmp_path / "k.scores.jsonl")) == 3  # the bad gold + the first batch of two
    with open(tmp_path / "k.scores.jsonl", "a") as f:
        f.write('{"id": "q-half", "pass_ra')  # torn last line of the killed write
    engine = ScriptedEngine()
    run(data, out, engine, batch_size=2)
    assert engine.calls == [["q-half", "q-easy"], ["q-seven"]]
    assert [r["id"] for r in read(out)] == ["q-one", "q-half", "q-seven"]
    assert len(read(tmp_path / "k.scores.jsonl")) == 6


def test_parse_range():
    assert parse_range("0.1-0.9") == (0.1, 0.9) and parse_range("0,1") == (0.0, 1.0)
    with pytest.raises(ValueError):
        parse_range("0.9-0.1")
    with pytest.raises(ValueError):
        parse_range("half")


def test_cli_wrapper(data, tmp_path):
    app = typer.Typer()

    @app.command()
    def filter(model: str, input: str, output: str, samples: int = 8, keep: str = "0.1-0.9"):
        typer.echo(
            json.dumps(
                filter_command(
                    model,
                    input,
                    output,
                    samples=samples,
                    keep=parse_range(keep),
                    engine=ScriptedEngine(),
                    log=lambda m: None,
                )
            )
        )

    res = CliRunner().invoke(app, ["scripted", str(data), str(tmp_path / "o.jsonl"), "--keep", "0.5-1"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["kept"] == 3


def test_tiny_llama_end_to_end(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"id": f"a{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "kept.jsonl"
    summary = filter_command(
        "tiny:llama",
        str(path),
        str(out),
        samples=2,
        keep=(0.0, 1.0),
        max_new_tokens=4,
        batch_size=2,
        log=lambda m: None,
    )
    scores = read(tmp_path / "kept.scores.jsonl")
    assert [r["id"] for r in scores] == ["a0", "a1", "a2"]
    assert all(r["samples"] == 2 and r["pass_rate"] in (0.0, 0.5, 1.0) for r in scores)
    assert summary["kept"] == 3 and len(read(out)) == 3
