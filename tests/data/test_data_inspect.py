"""`inspect_command` counts and samples on the fixture files, and a CLI wrapper as the lead will wire it."""

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from phaserl.data.schema import Example
from phaserl.data.tools.inspect import detected_type, format_report, inspect_command

FIX = Path(__file__).parents[1] / "fixtures" / "data"


def test_counts_on_generic_fixture():
    r = inspect_command(str(FIX / "generic.jsonl"))
    assert r["examples"] == 4 and r["bad_rows"] == 0
    assert r["by_source"] == {"generic": 3, "toy": 1}
    assert r["by_answer_type"] == {"auto": 2, "number": 1, "string": 1}
    assert r["images"] == {
        "with_images": 3,
        "text_only": 1,
        "image_refs": 4,
        "missing": 0,
        "missing_ids": [],
        "in_memory": 0,
    }
    assert r["captions"] == {"with_caption": 1, "images_with_caption": 1, "coverage": round(1 / 3, 4)}
    assert r["with_choices"] == 1


def test_bad_rows_and_missing_images_are_reported_not_raised():
    r = inspect_command(str(FIX / "bad.jsonl"))
    assert r["examples"] == 3 and r["bad_rows"] == 4  # the missing image is counted, not skipped
    assert r["images"]["missing"] == 1 and r["images"]["missing_ids"] == ["missing-image"]
    assert any("malformed JSON" in m for m in r["bad_row_messages"])


def test_samples_in_every_view():
    r = inspect_command(str(FIX / "generic.jsonl"), n_show=2)
    by_view = {}
    for s in r["samples"]:
        by_view.setdefault(s["view"], []).append(s)
    assert [s["id"] for s in by_view["text"]] == ["g1", "g2"]
    assert [s["id"] for s in by_view["image"]] == ["g2", "g3"]
    assert [s["id"] for s in by_view["image+caption"]] == ["g2"]  # the only example with a caption
    caption_text = by_view["image+caption"][0]["messages"][-1]["content"][-1]["text"]
    assert caption_text.startswith("Caption: A red square.")
    assert by_view["image"][1]["images"] == 2
    json.dumps(r)  # the report is JSON-ready


def test_missing_image_shows_as_sample_error():
    r = inspect_command(str(FIX / "bad.jsonl"), n_show=5)
    errors = [s for s in r["samples"] if s["view"] == "image" and "error" in s]
    assert [s["id"] for s in errors] == ["missing-image"] and "image not found" in errors[0]["error"]
    no_caption = [s for s in r["samples"] if s["view"] == "image+caption"]
    assert no_caption == [{"view": "image+caption", "id": None, "error": "no example fits this view"}]


def test_detected_type():
    assert detected_type(Example(id="a", question="q", answer="1,234.5")) == "number"
    assert detected_type(Example(id="a", question="q", answer="\\frac{1}{2}")) == "math"
    assert detected_type(Example(id="a", question="q", answer="B", choices=["x", "y"])) == "choice"


def test_text_report_and_cli_wrapper():
    app = typer.Typer()

    @app.command()
    def inspect(
        path: str, adapter: str = "generic", show: int = 3, as_json: bool = typer.Option(False, "--json")
    ):
        report = inspect_command(path, adapter, n_show=show)
        typer.echo(json.dumps(report) if as_json else format_report(report))

    res = CliRunner().invoke(app, [str(FIX / "mathvision.jsonl"), "--adapter", "mathvision", "--show", "1"])
    assert res.exit_code == 0, res.output
    assert "3 examples, 0 bad rows" in res.output and "--- view image, example 1" in res.output
    assert "[user] <image> Which number should be written" in res.output
    res = CliRunner().invoke(app, [str(FIX / "generic.jsonl"), "--json"])
    assert json.loads(res.output)["examples"] == 4
