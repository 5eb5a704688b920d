import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from phaserl.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_dry_run_prints_the_plan_without_a_model():
    r = runner.invoke(app, ["train", str(ROOT / "recipes/smoke_tiny.yaml"), "--dry-run", "--set", "stages.0.steps=7"])
    assert r.exit_code == 0, r.output
    assert "stage 1 'text'" in r.output and "steps=7" in r.output and "view=image+caption" in r.output
    assert "generated tokens" in r.output


def test_bad_recipe_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "recipes/smoke_tiny.yaml").read_text().replace("group_size:", "group_sise:"))
    r = runner.invoke(app, ["train", str(bad), "--dry-run"])
    assert r.exit_code == 2 and "group_sise" in r.output


def test_verify_command(tmp_path):
    pairs = tmp_path / "p.jsonl"
    pairs.write_text("\n".join(json.dumps(x) for x in [
        {"gold": "7", "pred": "3 + 4 = 7"}, {"gold": "\\frac{1}{2}", "pred": "0.5"}, {"gold": "B", "pred": "(C)",
                                                                                    "answer_type": "choice"}]) + "\n")
    out = tmp_path / "o.jsonl"
    r = subprocess.run([sys.executable, "-m", "phaserl", "verify", "--pairs", str(pairs), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("3 pairs, 2 equal, 0 undecided")
    assert [json.loads(x)["equal"] for x in out.read_text().splitlines()] == [True, True, False]


def test_bad_data_file_names_file_and_line(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "q1", "answer": "1"}\n{"question": "q2"\n')
    r = runner.invoke(app, ["train", str(ROOT / "recipes/smoke_tiny.yaml"), "--dry-run",
                            "--set", f"stages.0.data=[{{path: {data}}}]"])
    assert f"{data}:2" in r.output
