"""Benchmark loaders on the small fixtures (and on the full shared files when ../shared is present)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phaserl.data.schema import DataError
from phaserl.eval.loaders._images import MissingImagesError
from phaserl.eval.loaders.gsm8k import gold_number
from phaserl.eval.loaders.olympiadbench import load_olympiadbench
from phaserl.eval.registry import BENCHMARKS, get_benchmark, load_benchmark, resolve_data_dir

FIX = Path(__file__).parents[1] / "fixtures" / "eval"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"


def test_mathvision_fixture_has_images_choices_and_meta():
    exs = load_benchmark("mathvision:testmini", FIX)
    assert len(exs) == 8
    by_id = {e.id: e for e in exs}
    assert by_id["6"].choices == ["A", "B", "C", "D", "E"] and by_id["6"].answer_type == "choice"
    assert by_id["39"].choices[0] == "red"  # option texts kept for the official option-value comparison
    assert by_id["4"].choices is None and by_id["4"].answer == "6"
    assert by_id["4"].meta == {"subject": "counting", "level": 1}
    assert all(len(e.images) == 1 and Path(e.images[0]).is_file() for e in exs)
    assert all("<image" not in e.question for e in exs)


def test_mathvision_bad_answer_letter_names_file_and_line(tmp_path):
    rows = [json.loads(line) for line in (FIX / "mathvision" / "testmini.jsonl").read_text().splitlines()]
    rows[2]["answer"] = "Z"
    (tmp_path / "mathvision").mkdir()
    (tmp_path / "mathvision" / "testmini.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"testmini.jsonl:3 \(field 'answer'\)"):
        load_benchmark("mathvision:testmini", tmp_path, missing_images="ignore")


def test_mathvista_reports_missing_images_and_text_only_on_request():
    with pytest.raises(MissingImagesError) as info:
        load_benchmark("mathvista:testmini", FIX)
    assert info.value.ids == ["5", "2", "1", "225"]  # the fixture folder itself holds no images
    assert "--image-dir" in str(info.value)
    with pytest.raises(MissingImagesError) as info:
        load_benchmark("mathvista:testmini", FIX, image_dir=FIX / "mathvista_images")
    assert info.value.ids == ["225"]
    kept = load_benchmark(
        "mathvista:testmini", FIX, image_dir=FIX / "mathvista_images", missing_images="skip"
    )
    assert [e.id for e in kept] == ["5", "2", "1"] and all(e.images for e in kept)
    text = load_benchmark(
        "mathvista:testmini", FIX, image_dir=FIX / "mathvista_images", missing_images="text"
    )
    assert [e.id for e in text if not e.images] == ["225"] and text[-1].meta["image_missing"]


def test_mathvista_fields_and_official_prompt():
    exs = {e.id: e for e in load_benchmark("mathvista:testmini", FIX, missing_images="ignore")}
    mc = exs["5"]
    assert mc.answer == "97" and mc.choices == ["97", "102", "107", "122"] and mc.answer_type == "choice"
    assert mc.question.startswith("Hint:") and "Choices" not in mc.question  # the renderer adds the choices
    assert exs["1"].meta["precision"] == 1 and exs["1"].meta["answer_type"] == "float"
    assert exs["5"].meta["skills"] == ["geometry reasoning", "algebraic reasoning"]


def test_mathverse_text_only_and_vision_versions():
    text = load_benchmark("mathverse:testmini_text_only", FIX)
    assert [e.answer_type for e in text] == ["choice", "choice", "auto"] and not any(e.images for e in text)
    assert "Choices:" in text[0].question and text[0].meta["problem_version"] == "Text Only"
    vision = load_benchmark("mathverse:testmini", FIX)
    assert [e.meta["problem_version"] for e in vision] == ["Vision Intensive", "Vision Only"]
    assert all(Path(e.images[0]).is_file() for e in vision)
    assert vision[1].question.startswith(
        "Please first conduct reasoning"
    )  # empty question -> official prompt


def test_olympiadbench_both_formats():
    exs = {e.id: e for e in load_benchmark("olympiadbench", FIX)}
    assert exs["2592"].tolerance == pytest.approx(0.1) and exs["2592"].meta["error"] == [0.1]
    assert exs["1664"].answer == "$69$,$84$" and exs["1664"].meta["is_multiple_answer"]
    general = load_olympiadbench(FIX / "olympiadbench" / "OE_MM_maths_en_COMP.jsonl")
    assert [e.id for e in general] == ["9002"]  # the theorem-proving item has no final answer
    assert general[0].question.startswith("A square has side 2.") and "<image_1>" not in general[0].question
    assert Path(general[0].images[0]).name == "square.png" and general[0].tolerance == pytest.approx(0.01)
    assert load_benchmark("olympiadbench:OE_MM_maths_en_COMP", FIX)[0].id == "9002"


def test_text_benchmarks_gold_answers():
    assert load_benchmark("gsm8k", FIX)[0].answer == "18"
    assert gold_number("so 1,000 in all\n#### 1,000") == "1000" and gold_number("no marker") is None
    assert load_benchmark("amc23", FIX)[0].answer == "27"  # stored as 27.0
    assert load_benchmark("aime24", FIX)[0].answer == "204"
    assert load_benchmark("aime25", FIX)[0].answer == "70"
    assert load_benchmark("minerva_math", FIX)[0].answer == "1.6"  # last \boxed{} of the solution
    m = load_benchmark("math500", FIX, limit=2)
    assert len(m) == 2 and m[0].id == "test/precalculus/807.json" and m[0].meta["subject"] == "Precalculus"


def test_data_dir_resolution_and_missing_file_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASERL_DATA", str(FIX))
    assert resolve_data_dir(None) == (FIX, "$PHASERL_DATA")
    assert len(load_benchmark("gsm8k")) == 3
    assert resolve_data_dir(tmp_path)[1] == "--data-dir"
    with pytest.raises(
        DataError, match=r"gsm8k/test.jsonl not found under .* \(data directory from --data-dir\)"
    ):
        load_benchmark("gsm8k", tmp_path)
    monkeypatch.delenv("PHASERL_DATA")
    monkeypatch.chdir(tmp_path)
    assert "default" in resolve_data_dir(None)[1]
    assert resolve_data_dir(None)[0] == tmp_path / ".." / "shared" / "data" / "benchmarks"


def test_unknown_benchmark_lists_known_names():
    with pytest.raises(KeyError, match="mathvision:testmini"):
        get_benchmark("mathvison")


def test_hub_loading_converts_rows_with_in_memory_images(monkeypatch):
    from PIL import Image

    import phaserl.eval.loaders.hub as hub

    img = Image.new("RGB", (8, 8))
    rows = [
        {
            "id": "1",
            "question": "How many?\n<image1>",
            "options": [],
            "answer": "3",
            "level": 1,
            "subject": "counting",
            "image": "images/1.jpg",
            "decoded_image": img,
        }
    ]
    monkeypatch.setattr(hub, "hub_rows", lambda dataset, split, config=None: rows)
    exs = load_benchmark("mathvision:testmini", hub=True)
    assert exs[0].images == [img] and exs[0].answer == "3"


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize(
    "name, count",
    [
        ("mathvision:testmini", 304),
        ("mathverse:testmini_text_only", 788),
        ("olympiadbench", 675),
        ("math500", 500),
        ("gsm8k", 1319),
        ("aime24", 30),
        ("aime25", 30),
        ("amc23", 40),
        ("minerva_math", 272),
    ],
)
def test_shared_files_load_completely(name, count):
    assert len(load_benchmark(name, SHARED, missing_images="ignore")) == count


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_shared_mathvista_without_images_says_which():
    with pytest.raises(MissingImagesError) as info:
        load_benchmark("mathvista:testmini", SHARED)
    assert len(info.value.ids) == 1000
    assert len(load_benchmark("mathvista:testmini", SHARED, missing_images="text")) == 1000


def test_every_registered_benchmark_has_a_fixture():
    missing = [n for n in BENCHMARKS if n != "mathvision:test" and not (FIX / BENCHMARKS[n].path).is_file()]
    assert missing == []


def test_hub_unreachable_is_a_clear_error(monkeypatch):
    import datasets

    from phaserl.data.schema import DataError

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'AI4Math/MathVista' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"cannot load AI4Math/MathVista \[testmini\].*--data-dir"):
        load_benchmark("mathvista:testmini", hub=True)
