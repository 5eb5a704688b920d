"""`phaserl verify`: rows out with `extracted` and `equal`, the summary as the last printed line."""

import json
import re

from phaserl.rewards.cli import verify_command

ROWS = [
    {"gold": "7", "pred": "3 + 4 = 7"},
    {"gold": "\\frac{1}{2}", "pred": "<think>hmm</think><answer>\\boxed{0.5}</answer>", "id": "kept"},
    {"gold": "B", "pred": "The answer is (B).", "choices": ["1", "2", "3"]},
    {"gold": "3.14", "pred": "3.1416", "tolerance": 0.01},
    {"gold": "3.14", "pred": "3.1416"},
    {"gold": "$$", "pred": "1"},
    {"gold": 12, "pred": "12 apples", "answer_type": "number"},
    {"gold": "7", "pred": "<think>the answer is 7</think><answer></answer>"},
]
EQUAL = [True, True, True, True, False, None, True, False]
EXTRACTED = ["3 + 4 = 7", "0.5", "(B)", "3.1416", "3.1416", "1", "12 apples", None]
SUMMARY_RE = re.compile(r"(\d+) pairs, (\d+) equal, (\d+) undecided, [0-9.]+ s")


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")


def test_rows_to_stdout_and_summary_last(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    _write(pairs, ROWS)
    assert verify_command(pairs, None) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    out = [json.loads(line) for line in lines[:-1]]
    assert [r["equal"] for r in out] == EQUAL
    assert [r["extracted"] for r in out] == EXTRACTED
    assert out[1]["id"] == "kept" and out[2]["choices"] == ["1", "2", "3"]  # input fields repeated
    assert SUMMARY_RE.fullmatch(lines[-1]).groups() == ("8", "5", "1")


def test_rows_to_a_file(tmp_path, capsys):
    pairs, result = tmp_path / "pairs.jsonl", tmp_path / "out.jsonl"
    _write(pairs, ROWS[:3])
    assert verify_command(pairs, result, workers=1, timeout=5.0) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and SUMMARY_RE.fullmatch(printed[0]).groups() == ("3", "3", "0")
    assert [json.loads(line)["equal"] for line in result.read_text().splitlines()] == [True, True, True]


def test_bad_rows_name_the_line_and_field(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    for bad, field in [
        ({"gold": "1"}, "pred"),
        ({"gold": "1", "pred": "1", "answer_type": "essay"}, "answer_type"),
        ({"gold": "1", "pred": "1", "tolerance": "0.1"}, "tolerance"),
        ({"gold": [1], "pred": "1"}, "gold"),
    ]:
        _write(pairs, [{"gold": "1", "pred": "1"}, bad])
        assert verify_command(pairs, None) == 2
        err = capsys.readouterr().err
        assert f"pairs.jsonl:2 (field '{field}')" in err
    pairs.write_text("{not json\n")
    assert verify_command(pairs, None) == 2
    assert "pairs.jsonl:1" in capsys.readouterr().err
