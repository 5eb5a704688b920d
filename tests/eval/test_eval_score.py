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

FIX = Path(__file__).parents[1] / "fixtures" / "eval"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


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
    result = score_command(
        "mathvision:testmini", _write(tmp_path / "p.jsonl", ROWS), FIX, out, echo=lines.append
    )
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
        score_command(
            "mathvision:testmini",
            _write(tmp_path / "p.jsonl", [ROWS[0], {"id": "nope", "response": "x"}]),
            FIX,
            echo=lambda s: None,
        )
    with pytest.raises(DataError, match=r"p.jsonl:1 \(field 'response'\)"):
        score_command(
            "mathvision:testmini", _write(tmp_path / "p.jsonl", [{"id": "4"}]), FIX, echo=lambda s: None
        )


def test_samples_give_pass_and_mean_at_k(tmp_path):
    rows = [
        {"id": "4", "response": "\\boxed{6}"},
        {"id": "4", "response": "\\boxed{7}"},
        {"id": "5", "response": "\\boxed{1}"},
        {"id": "5", "response": "\\boxed{2}"},
    ]
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

    exs = [
        Example(id="1", question="q", meta={"skills": ["a", "b"]}),
        Example(id="2", question="q", meta={"skills": ["b"]}),
    ]
    out = breakdown(exs, [1.0, 0.0], ("skills", "missing"))
    assert out == {
        "skills": {
            "a": {"correct": 1, "total": 1, "accuracy": 1.0},
            "b": {"correct": 1, "total": 2, "accuracy": 0.5},
        }
    }


def test_score_through_a_typer_cli(tmp_path):
    app = typer.Typer()

    @app.command()
    def score(
        benchmark: str, predictions: Path, data_dir: Path = typer.Option(None), out: Path = typer.Option(None)
    ):
        score_command(benchmark, predictions, data_dir, out, echo=typer.echo)

    @app.command()
    def other() -> None:  # a second command keeps typer in sub-command mode, like the real CLI
        pass

    preds = _write(tmp_path / "p.jsonl", ROWS[:3])
    res = CliRunner().invoke(
        app,
        [
            "score",
            "mathvision:testmini",
            str(preds),
            "--data-dir",
            str(FIX),
            "--out",
            str(tmp_path / "r.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == "mathvision:testmini: 2/3 = 66.67%"
    assert json.loads((tmp_path / "r.json").read_text())["correct"] == 2


def test_score_mathvista_with_given_extractions_uses_official_normalisation(tmp_path):
    rows = [
        {"id": "5", "extraction": "(A) 97"},
        {"id": "2", "extraction": "1000.0"},
        {"id": "1", "extraction": "1.24"},
        {"id": "225", "extraction": "[0, 2]"},
    ]
    result = score_command("mathvista:testmini", _write(tmp_path / "p.jsonl", rows), FIX, echo=lambda s: None)
    assert result["correct"] == 3 and result["scorer"] == "mathvista_rules"
    assert set(result["breakdown"]) >= {"question_type", "answer_type", "language", "skills", "grade"}


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_score_official_internlm_file(tmp_path):
    lines: list[str] = []
    result = score_command(
        "mathvision:test",
        SHARED / "official_outputs" / "mathvision" / "InternLM-XComposer2-VL-CoT.jsonl",
        SHARED / "benchmarks",
        echo=lines.append,
    )
    assert lines[-1] == "mathvision:test: 437/3040 = 14.37%" and result["missing_predictions"] == 0


# ---- LLM extraction and judge (MathVerse's official protocol) against a local OpenAI-compatible server ------

VERSE = [  # (sample_index, question_type, gold, prediction row)
    ("1", "multi-choice", "D", {"response": "The angle is 140 degrees. ANSWER: D"}),
    ("2", "multi-choice", "B", {"response": "So it must be ANSWER: (B)"}),
    ("3", "free-form", "2191.7", {"response": "The distance is ANSWER: 2191.7 metres"}),
    ("4", "free-form", "5", {"response": "x = 6, ANSWER: 6"}),
    ("5", "multi-choice", "A", {"extraction": "A"}),
    ("6", "free-form", "12", {"response": "Area = 12 ANSWER: 12"}),
    ("7", "free-form", "0.5", {"response": "p = 1/2 ANSWER: 0.50"}),
    ("8", "multi-choice", "C", {"response": "ANSWER: A"}),
    ("9", "free-form", "30", {"response": "angle ABC is ANSWER: 30°"}),
    ("10", "free-form", "7", {"response": "no idea"}),
]


def verse_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A data folder holding a 10-item mathverse/testmini.json (the official fields) and predictions for it."""
    rows = [
        {
            "sample_index": i,
            "problem_index": i,
            "problem_version": "Vision Dominant",
            "question": f"Question {i}?",
            "image": f"images_version_1/image_{i}.png",
            "answer": gold,
            "question_type": qtype,
            "metadata": {
                "split": "testmini",
                "source": "GeoQA",
                "subject": "Plane Geometry",
                "subfield": "Angle",
            },
            "query_wo": "",
            "query_cot": "",
        }
        for i, qtype, gold, _ in VERSE
    ]
    data = tmp_path / "bench"
    (data / "mathverse").mkdir(parents=True)
    (data / "mathverse" / "testmini.json").write_text(json.dumps(rows))
    return data, _write(tmp_path / "preds.jsonl", [{"id": i, **pred} for i, _, _, pred in VERSE])


def fake_judge(body: dict) -> str:
    """Extraction: what follows ANSWER: in the response. Judge: 1 when the numbers (or letters) agree."""
    import re

    prompt = body["messages"][0]["content"]
    if prompt.startswith("Below are"):
        response = prompt.split("Model response:\n", 1)[1].split("\n\nExtracted answer:")[0]
        return response.split("ANSWER:", 1)[1].strip() if "ANSWER:" in response else ""
    gold = prompt.split("Standard answer: ", 1)[1].split("\n")[0]
    pred = prompt.split("Model answer: ", 1)[1].split("\n")[0]

    def norm(s):
        m = re.search(r"-?\d+(\.\d+)?", s)
        return float(m.group()) if m else s.strip("() ")

    return "1" if norm(gold) == norm(pred) else "0"


def test_llm_extract_and_judge_concurrent_cached_and_recorded(tmp_path):
    from fake_openai_server import FakeOpenAI

    data, preds = verse_dir(tmp_path)
    cache, out = tmp_path / "llm.jsonl", tmp_path / "result.json"
    with FakeOpenAI(fake_judge, fail_first=2, delay=0.05) as server:
        result = score_command(
            "mathverse:testmini",
            preds,
            data,
            out,
            llm_base_url=server.url,
            llm_model="judge-model",
            llm_cache=cache,
            llm_concurrency=4,
            echo=lambda m: None,
        )
        # 9 extractions (one row has its extraction); judged: the 6 extractions that are not the gold verbatim
        # ("(B)", "2191.7 metres", "6", "0.50", "A" for C, "30°"); the empty one is no answer
        assert sum(server.answered.values()) == 9 + 6 and max(server.answered.values()) == 1
        assert server.received == 15 + 2 and server.max_in_flight > 1  # two 503s retried; concurrent
        verdicts = {v["id"]: v for v in result["verdicts"]}
        assert [i for i in verdicts if verdicts[i]["correct"]] == ["1", "2", "3", "5", "6", "7", "9"]
        assert verdicts["3"]["extraction"] == "2191.7 metres" and verdicts["3"]["method"] == "llm:judge-model"
        assert verdicts["10"]["extraction"] is None and verdicts["5"]["method"] == "given"
        saved = json.loads(out.read_text())
        assert saved["scorer"] == "mathverse_llm_judge" and "judge llm:judge-model" in saved["scorer_version"]
        llm = saved["llm"]
        assert llm["model"] == "judge-model" and llm["base_url"] == server.url and llm["requests"] == 15
        assert llm["extract_prompt"].startswith("Below are") and "Standard answer" in llm["judge_prompt"]
        received = server.received
        r = CliRunner().invoke(
            _app(),
            [
                "score",
                "mathverse:testmini",
                str(preds),
                "--data-dir",
                str(data),
                "--out",
                str(out),
                "--llm-base-url",
                server.url,
                "--llm-model",
                "judge-model",
                "--llm-cache",
                str(cache),
            ],
        )
        assert r.exit_code == 0, r.output
        assert server.received == received  # the rerun is answered from the cache
        again = json.loads(out.read_text())
        assert again["llm"]["requests"] == 0 and again["llm"]["cache_hits"] == 15
        assert again["correct"] == saved["correct"] == 7


def test_llm_api_key_from_the_environment(tmp_path, monkeypatch):
    from fake_openai_server import FakeOpenAI

    data, preds = verse_dir(tmp_path)
    args = [
        "score",
        "mathverse:testmini",
        str(preds),
        "--data-dir",
        str(data),
        "--llm-model",
        "m",
        "--llm-cache",
        str(tmp_path / "c.jsonl"),
        "--llm-api-key-env",
        "JUDGE_KEY",
    ]
    with FakeOpenAI(fake_judge, api_key="s3cret") as server:
        r = CliRunner().invoke(_app(), [*args, "--llm-base-url", server.url])
        assert r.exit_code == 2 and "JUDGE_KEY" in r.output and server.received == 0  # unset: refused early
        monkeypatch.setenv("JUDGE_KEY", "wrong")
        r = CliRunner().invoke(_app(), [*args, "--llm-base-url", server.url])
        assert r.exit_code == 2 and "HTTP 401" in r.output
        monkeypatch.setenv("JUDGE_KEY", "s3cret")
        r = CliRunner().invoke(_app(), [*args, "--llm-base-url", server.url])
        assert r.exit_code == 0, r.output
        assert r.output.strip().splitlines()[-1] == "mathverse:testmini: 7/10 = 70.00%"


def test_killed_scoring_rerun_asks_nothing_twice(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from fake_openai_server import FakeOpenAI

    data, preds = verse_dir(tmp_path)
    cache = tmp_path / "llm.jsonl"
    args = [
        "mathverse:testmini",
        str(preds),
        "--data-dir",
        str(data),
        "--llm-model",
        "judge-model",
        "--llm-cache",
        str(cache),
    ]
    with FakeOpenAI(fake_judge, hang_after=4) as server:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "phaserl",
                "score",
                *args,
                "--llm-base-url",
                server.url,
                "--llm-concurrency",
                "2",
            ],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while sum(server.answered.values()) < 4 and time.time() < deadline:
            assert proc.poll() is None, "the scoring run ended before the kill"
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert sum(server.answered.values()) == 4 and len(cache.read_text().splitlines()) == 4
        server.hang_after = None
        result = score_command(
            *args[:1],
            preds,
            data,
            None,
            llm_base_url=server.url,
            llm_model="judge-model",
            llm_cache=cache,
            echo=lambda m: None,
        )
    assert max(server.answered.values()) == 1 and sum(server.answered.values()) == 15
    assert result["llm"]["requests"] == 11 and result["correct"] == 7


def _app():
    from phaserl.cli import app

    return app
