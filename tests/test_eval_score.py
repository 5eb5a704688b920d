"""`phaserl score`: predictions files in, result JSON and the summary line out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from phaserl.data.schema import DataError
from phaserl.eval.metrics import breakdown, pass_at_k, summarize
from phaserl.eval.score import score_command

FIX = Path(__file__).parent / "fixtures" / "eval"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# gold answers of the fixture: 4 -> 6, 5 -> 61, 6 -> D, 39 -> A (red), 55 -> A, 250 -> 4.8, 2513 -> 2.5, 2955 -> (3,-4)
ROWS = [
    {"id": "4", "response": "I count six digits, so the answer is \\boxed{6}."},
    {"id": "5", "response": "The last daisy holds \\boxed{60}."},
    {"id": "6", "response": "Only picture D works.\n\\boxed{D}"},
    {"id": "39", "extraction": "red"},  # the option text, already extracted
    {"id": "250", "response": "r = 120/25 = \\boxed{4.8}"},
    {"id": "2955", "response": "Reflecting gives \\boxed{(3, -4)}"},
]


def test_score_command_result_and_last_line(tmp_path):
    lines: list[str] = []
    out = tmp_path / "res" / "result.json"
    result = score_command("mathvision:testmini", _write(tmp_path / "p.jsonl", ROWS), FIX, out, echo=lines.append)
    assert (result["total"], result["correct"]) == (6, 5)
    assert result["accuracy"] == pytest.approx(5 / 6)
    assert lines[-1] == "mathvision:testmini: 5/6 = 83.33%"
    assert any("2 of 8 items have no prediction" in line for line in lines)
    saved = json.loads(out.read_text())
    assert saved["scorer"] == "mathvision_official" and "MATH-V" in saved["scorer_version"]
    assert saved["extraction"] == {"rules": 5, "given": 1}
    assert saved["breakdown"]["subject"]["arithmetic"] == {"correct": 0, "total": 1, "accuracy": 0.0}
    assert saved["breakdown"]["level"]["1"]["total"] == 1
    by_id = {v["id"]: v for v in saved["verdicts"]}
    assert by_id["5"] == {"id": "5", "extraction": "60", "correct": False, "method": "rules"}


def test_score_command_rejects_unknown_ids_and_empty_rows(tmp_path):
    with pytest.raises(DataError, match=r"p.jsonl:2 \(field 'id'\)"):
        score_command("mathvision:testmini", _write(tmp_path / "p.jsonl", [ROWS[0], {"id": "nope", "response": "x"}]),
                      FIX, echo=lambda s: None)
    with pytest.raises(DataError, match=r"p.jsonl:1 \(field 'response'\)"):
        score_command("mathvision:testmini", _write(tmp_path / "p.jsonl", [{"id": "4"}]), FIX, echo=lambda s: None)


def test_samples_give_pass_and_mean_at_k(tmp_path):
    rows = [{"id": "4", "response": "\\boxed{6}"}, {"id": "4", "response": "\\boxed{7}"},
            {"id": "5", "response": "\\boxed{1}"}, {"id": "5", "response": "\\boxed{2}"}]
    lines: list[str] = []
    result = score_command("mathvision:testmini", _write(tmp_path / "p.jsonl", rows), FIX, echo=lines.append)
    assert result["samples_per_item"] == 2
    assert result["mean@2"] == pytest.approx(0.25) and result["pass@2"] == pytest.approx(0.5)
    assert result["breakdown"]["subject"]["counting"]["accuracy"] == pytest.approx(0.5)
    assert "pass@2 = 50.00%" in lines[-2]


def test_pass_at_k_by_hand():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # C(3,2)/C(4,2) of the pairs miss it
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 3, 2) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)
    s = summarize(["a", "a", "b", "b"], [True, False, False, False])
    assert s["mean@2"] == pytest.approx(0.25) and s["pass@2"] == pytest.approx(0.5) and s["items"] == 2


def test_breakdown_counts_list_values_under_each_entry():
    from phaserl.data.schema import Example

    exs = [Example(id="1", question="q", meta={"skills": ["a", "b"]}), Example(id="2", question="q",
                                                                             meta={"skills": ["b"]})]
    out = breakdown(exs, [1.0, 0.0], ("skills", "missing"))
    assert out == {"skills": {"a": {"correct": 1, "total": 1, "accuracy": 1.0},
                              "b": {"correct": 1, "total": 2, "accuracy": 0.5}}}


def test_score_through_a_typer_cli(tmp_path):
    app = typer.Typer()

    @app.command()
    def score(benchmark: str, predictions: Path, data_dir: Path = typer.Option(None), out: Path = typer.Option(None)):
        score_command(benchmark, predictions, data_dir, out, echo=typer.echo)

    @app.command()
    def other() -> None:  # a second command keeps typer in sub-command mode, like the real CLI
        pass

    preds = _write(tmp_path / "p.jsonl", ROWS[:3])
    res = CliRunner().invoke(app, ["score", "mathvision:testmini", str(preds), "--data-dir", str(FIX),
                                   "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == "mathvision:testmini: 2/3 = 66.67%"
    assert json.loads((tmp_path / "r.json").read_text())["correct"] == 2


def test_score_mathvista_with_given_extractions_uses_official_normalisation(tmp_path):
    rows = [{"id": "5", "extraction": "(A) 97"}, {"id": "2", "extraction": "1000.0"},
            {"id": "1", "extraction": "1.24"}, {"id": "225", "extraction": "[0, 2]"}]
    result = score_command("mathvista:testmini", _write(tmp_path / "p.jsonl", rows), FIX, echo=lambda s: None)
    assert result["correct"] == 3 and result["scorer"] == "mathvista_rules"
    assert set(result["breakdown"]) >= {"question_type", "answer_type", "language", "skills", "grade"}


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_score_official_internlm_file(tmp_path):
    lines: list[str] = []
    result = score_command("mathvision:test", SHARED / "official_outputs" / "mathvision" /
                           "InternLM-XComposer2-VL-CoT.jsonl", SHARED / "benchmarks", echo=lines.append)
    assert lines[-1] == "mathvision:test: 437/3040 = 14.37%" and result["missing_predictions"] == 0
