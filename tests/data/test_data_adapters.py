"""Each adapter against its fixture rows in tests/fixtures/data/ (and the canonical row round trip)."""

import json
from pathlib import Path

import pytest
from PIL import Image

from phaserl.data.adapters import ADAPTERS, get_adapter
from phaserl.data.adapters._common import looks_like_choice, unbox, unwrap_dollars
from phaserl.data.adapters.generic import example_to_row
from phaserl.data.render import render
from phaserl.data.schema import DataError, Example
from phaserl.data.sources import DatasetSpec, load_examples

FIX = Path(__file__).parents[1] / "fixtures" / "data"


def load(name: str, adapter: str, **kw) -> list[Example]:
    return load_examples(DatasetSpec(path=str(FIX / name), adapter=adapter, **kw))


def test_registry_names_and_custom_import():
    assert {"generic", "deepscaler", "virl39k", "geometry3k", "mathv360k", "vermulti", "mathvision"} <= set(
        ADAPTERS
    )
    assert get_adapter("phaserl.data.adapters.deepscaler:to_example") is ADAPTERS["deepscaler"]
    with pytest.raises(ValueError, match="cannot import adapter"):
        get_adapter("phaserl.nothing:here")


def test_every_adapter_documents_a_sample_row():
    import importlib

    for module in ("generic", "deepscaler", "virl39k", "geometry3k", "mathv360k", "mathvision"):
        doc = importlib.import_module(f"phaserl.data.adapters.{module}").__doc__
        assert doc and "{" in doc and "answer" in doc, module


def test_deepscaler():
    a, b = load("deepscaler.jsonl", "deepscaler")
    assert a.question.startswith("Let $a$ and $b$") and a.answer == "4" and a.images == []
    assert "AM-HM" in a.meta["solution"] and a.id == "deepscaler-0" and b.answer == "9"


def test_virl39k_unboxes_answers_and_keeps_pass_rates():
    a, b = load("virl39k.jsonl", "virl39k")
    assert a.id == "MMK12-0001" and a.answer == "70^\\circ" and not a.question.startswith("<image>")
    assert a.source == "MMK12" and a.meta["PassRate_7BTrained"] == 0.25 and len(a.images) == 1
    assert a.answer_type == "auto"
    assert b.answer == "A" and b.answer_type == "choice"


def test_geometry3k_both_shapes():
    hub, original = load("geometry3k.jsonl", "geometry3k")
    assert (
        hub.question == "Find x. Round to the nearest tenth." and hub.answer == "7.6" and len(hub.images) == 1
    )
    assert original.id == "2401" and original.choices == ["3", "5", "7", "9"] and original.answer == "B"
    assert original.answer_type == "choice" and original.images[0].endswith("2401/img_diagram.png")
    assert original.meta["problem_type_goal"] == ["Length"]


def test_mathv360k_llava_rows():
    a, b = load("mathv360k.jsonl", "mathv360k")
    assert a.id == "identity_12" and a.answer == "1" and a.question.startswith("Hint:")
    assert a.source == "images" and a.answer_type == "auto"  # source: first folder of the image path
    assert b.answer == "A" and b.answer_type == "choice"


def test_vermulti_chat_rows():
    a, b = load("vermulti.jsonl", "vermulti")
    assert a.question == "Find the area of the triangle with base 4 and height 6." and a.answer == "12"
    assert Path(a.images[0]).name == "triangle.png" and a.meta["system"] == "You are a helpful assistant."
    assert (
        b.images == [] and b.question == "What is $\\frac{1}{2}+\\frac{1}{3}$?" and b.answer == "\\frac{5}{6}"
    )


def test_vermulti_absolute_file_urls(tmp_path):
    msg = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": f"file://{FIX}/images/red.png"},
                {"type": "text", "text": "Colour?"},
            ],
        }
    ]
    (tmp_path / "v.jsonl").write_text(json.dumps({"message": json.dumps(msg), "answer": "red"}) + "\n")
    ex = load_examples(DatasetSpec(path=str(tmp_path / "v.jsonl"), adapter="vermulti"))[0]
    assert render(ex, "image").images[0].getpixel((0, 0)) == (220, 30, 30)


def test_vermulti_malformed_message_names_the_field(tmp_path):
    (tmp_path / "v.jsonl").write_text(json.dumps({"message": "[{oops", "answer": "1"}) + "\n")
    with pytest.raises(DataError, match="malformed JSON in the chat string") as err:
        load_examples(DatasetSpec(path=str(tmp_path / "v.jsonl"), adapter="vermulti"))
    assert err.value.field == "message" and err.value.line == 1


def test_mathvision_options():
    one, two, three = load("mathvision.jsonl", "mathvision")
    assert one.question == "Which number should be written in place of the question mark?"
    assert (
        one.choices is None
        and one.answer_type == "auto"
        and one.meta == {"level": 2, "subject": "arithmetic"}
    )
    assert two.choices is None and two.answer_type == "choice"  # letters only: the options are in the image
    assert three.choices == ["2", "3", "4"] and three.answer_type == "choice"


def test_mathvision_reads_the_shared_benchmark():
    path = (
        Path(__file__).resolve().parents[3]
        / "shared"
        / "data"
        / "benchmarks"
        / "mathvision"
        / "testmini.jsonl"
    )
    if not path.exists():
        pytest.skip("../shared/data is absent")
    exs = load_examples(DatasetSpec(path=str(path), adapter="mathvision"))
    assert len(exs) == 304 and all(len(e.images) == 1 for e in exs)


def test_helpers():
    assert (
        unbox("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
        and unbox("\\boxed{1} and \\boxed{2}") == "\\boxed{1} and \\boxed{2}"
    )
    assert unwrap_dollars("$x^2$") == "x^2" and unwrap_dollars("$a$ or $b$") == "$a$ or $b$"
    assert looks_like_choice("Pick one:\nA. red\nB. blue", "B")
    assert not looks_like_choice("What is 2 + 2?", "A")


def test_canonical_rows_round_trip(tmp_path):
    img = Image.new("RGB", (4, 4), (1, 2, 3))
    ex = Example(
        id="r1",
        question="q?",
        answer="3",
        images=[str(FIX / "images/red.png"), img],
        caption="cap",
        choices=["1", "3"],
        answer_type="choice",
        source="src",
        tolerance=0.5,
        meta={"k": [1, 2]},
    )
    out = tmp_path / "out"
    out.mkdir()
    row = example_to_row(ex, out)
    assert row["images"][0].startswith("..") and row["images"][1].startswith("images/")
    (out / "rows.jsonl").write_text(json.dumps(row) + "\n")
    back = load_examples(DatasetSpec(path=str(out / "rows.jsonl")))[0]
    assert (back.id, back.question, back.answer, back.caption, back.choices) == (
        "r1",
        "q?",
        "3",
        "cap",
        ["1", "3"],
    )
    assert (back.answer_type, back.source, back.tolerance, back.meta) == ("choice", "src", 0.5, {"k": [1, 2]})
    assert render(back, "image").images[1].getpixel((0, 0)) == (1, 2, 3)


def test_generic_chat_prompt_rows_verl_style(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    png = (FIX / "images/red.png").read_bytes()
    table = pa.table(
        {
            "prompt": [
                [{"role": "system", "content": "Think."}, {"role": "user", "content": "<image>What colour?"}]
            ],
            "images": [[{"bytes": png, "path": None}]],
            "reward_model": [{"ground_truth": "red", "style": "rule"}],
            "data_source": ["toy"],
        }
    )
    pq.write_table(table, tmp_path / "verl.parquet")
    spec = DatasetSpec(path=str(tmp_path / "verl.parquet"), fields={"answer": "reward_model.ground_truth"})
    (ex,) = load_examples(spec)
    assert (ex.question, ex.answer, ex.source) == ("What colour?", "red", "toy")
    assert render(ex, "image").images[0].getpixel((0, 0)) == (220, 30, 30)


def test_generic_strips_image_placeholders(tmp_path):
    (tmp_path / "d.jsonl").write_text(
        '{"question": "<image>\\nFind x.", "answer": "2"}\n{"question": "<image>", "answer": "1"}\n'
    )
    with pytest.raises(DataError, match="only an <image> placeholder") as err:
        load_examples(DatasetSpec(path=str(tmp_path / "d.jsonl")))
    assert err.value.line == 2
    (ex,) = load_examples(DatasetSpec(path=str(tmp_path / "d.jsonl")), skip_bad_rows=True, log=lambda m: None)
    assert ex.question == "Find x."
