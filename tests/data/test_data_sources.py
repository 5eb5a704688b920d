"""DatasetSpec validation, file formats, image references and bad-row handling of phaserl.data.sources."""

import base64
import io
import json
import sys
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from phaserl.data.render import render
from phaserl.data.schema import DataError
from phaserl.data.sources import DatasetSpec, load_examples, resolve_image

FIX = Path(__file__).parents[1] / "fixtures" / "data"


def png_bytes(colour=(10, 200, 10), size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---- spec ----------------------------------------------------------------------------------------


def test_spec_needs_exactly_one_source():
    with pytest.raises(ValidationError, match="exactly one of path, hub, generator or benchmark"):
        DatasetSpec()
    with pytest.raises(ValidationError, match="exactly one"):
        DatasetSpec(path="a.jsonl", generator="arithmetic")
    with pytest.raises(ValidationError, match="unknown benchmark 'nope'"):
        DatasetSpec(benchmark="nope")


def test_benchmark_source_reads_the_local_data_directory(monkeypatch):
    monkeypatch.setenv("PHASERL_DATA", str(Path(__file__).parents[1] / "fixtures" / "eval"))
    spec = DatasetSpec(benchmark="mathvision:testmini", limit=3)
    examples = load_examples(spec, log=lambda *_: None)
    assert spec.name == "mathvision:testmini" and len(examples) == 3
    assert all(ex.source == "mathvision" for ex in examples)


def test_spec_rejects_unknown_keys_adapters_and_fields():
    with pytest.raises(ValidationError, match="extra"):
        DatasetSpec(path="a.jsonl", colour="red")
    with pytest.raises(ValidationError, match="unknown adapter 'nope'"):
        DatasetSpec(path="a.jsonl", adapter="nope")
    with pytest.raises(ValidationError, match="unknown keys \\['answr'\\]"):
        DatasetSpec(path="a.jsonl", fields={"answr": "x"})
    with pytest.raises(ValidationError, match="answer_type"):
        DatasetSpec(path="a.jsonl", answer_type="integer")


def test_spec_default_names():
    assert DatasetSpec(path="/x/train_set.jsonl").name == "train_set"
    assert DatasetSpec(generator="arithmetic").name == "arithmetic"
    assert DatasetSpec(hub="org/data").name == "org/data"
    assert DatasetSpec(path="/x/y.jsonl", name="mine").name == "mine"


def test_every_spec_field_is_documented():
    for name, field in DatasetSpec.model_fields.items():
        assert field.description, name


# ---- formats -------------------------------------------------------------------------------------


def test_jsonl_generic_rows_and_images():
    exs = load_examples(DatasetSpec(path=str(FIX / "generic.jsonl")))
    assert [e.id for e in exs] == ["g1", "g2", "g3", "4"]
    assert exs[0].images == [] and exs[0].answer_type == "number" and exs[0].source == "toy"
    assert exs[1].images == [str((FIX / "images/red.png").absolute())]
    assert exs[1].caption == "A red square." and exs[1].source == "generic"
    assert len(exs[2].images) == 2 and exs[2].choices == ["the first", "the second"]
    assert exs[2].meta == {"difficulty": 3}
    assert exs[3].answer == "3" and Path(exs[3].images[0]).name == "triangle.png"  # file:// URL, relative


def test_mapped_fields_with_dotted_keys():
    spec = DatasetSpec(
        path=str(FIX / "generic_mapped.jsonl"),
        fields={"id": "uid", "question": "prompt_text", "answer": "final.value", "images": "pic"},
    )
    a, b = load_examples(spec)
    assert (a.id, a.question, a.answer, a.images) == ("m1", "Compute $1/2 + 1/4$.", "\\frac{3}{4}", [])
    assert b.answer == "a triangle" and len(b.images) == 1


def test_json_list_and_dict_files():
    lst = load_examples(DatasetSpec(path=str(FIX / "generic_list.json")))
    assert [e.id for e in lst] == ["generic_list-0", "generic_list-1"]
    dct = load_examples(DatasetSpec(path=str(FIX / "generic_dict.json")))
    assert [e.id for e in dct] == ["101", "102"]
    assert dct[0].answer_type == "number"  # MathVista's "float" spelling
    assert dct[0].meta["precision"] == 1 and dct[1].choices == ["5", "7"]


def test_parquet_with_image_bytes(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "problem": ["What colour?", "What is 1 + 1?"],
            "answer": ["green", "2"],
            "images": [[{"bytes": png_bytes(), "path": None}], []],
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    exs = load_examples(DatasetSpec(path=str(tmp_path / "d.parquet")))
    assert isinstance(exs[0].images[0], bytes) and exs[1].images == []
    prompt = render(exs[0], "image")
    assert prompt.images[0].getpixel((0, 0)) == (10, 200, 10)


def test_folder_and_glob_paths(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"question": "q1", "answer": "1"}])
    write_jsonl(tmp_path / "b.jsonl", [{"question": "q2", "answer": "2"}])
    assert [e.question for e in load_examples(DatasetSpec(path=str(tmp_path)))] == ["q1", "q2"]
    assert len(load_examples(DatasetSpec(path=str(tmp_path / "b*.jsonl")))) == 1
    with pytest.raises(DataError, match="not found"):
        load_examples(DatasetSpec(path=str(tmp_path / "missing.jsonl")))


def test_limit_and_forced_answer_type():
    exs = load_examples(DatasetSpec(path=str(FIX / "generic.jsonl"), limit=2, answer_type="string"))
    assert len(exs) == 2 and {e.answer_type for e in exs} == {"string"}


def test_duplicate_ids_are_made_unique(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": "x", "question": "q", "answer": "1"}] * 3)
    logs = []
    exs = load_examples(DatasetSpec(path=str(path)), log=logs.append)
    assert [e.id for e in exs] == ["x", "x#2", "x#3"] and "2 duplicate ids" in logs[0]


def test_hub_loading_goes_through_datasets(tmp_path, monkeypatch):
    """A hub id goes to datasets.load_dataset with its subset and split; an Image column comes back as a
    LazyImage into the arrow cache, not decoded."""
    import datasets

    from phaserl.data.images import LazyImage, load_image

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")  # read at call time
    folder = tmp_path / "org_set"
    folder.mkdir()
    features = datasets.Features(
        {"problem": datasets.Value("string"), "answer": datasets.Value("string"), "image": datasets.Image()}
    )
    datasets.Dataset.from_dict(
        {"problem": ["hub q"], "answer": ["5"], "image": [{"bytes": png_bytes(), "path": None}]},
        features=features,
    ).to_parquet(folder / "test.parquet")
    calls, real = [], datasets.load_dataset

    def load_dataset(name, subset, split):
        calls.append((name, subset, split))
        return real("parquet", data_files={"test": str(folder / "test.parquet")}, split=split)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    exs = load_examples(DatasetSpec(hub="org/set", subset="main", split="test"))
    assert calls == [("org/set", "main", "test")]
    assert exs[0].question == "hub q" and exs[0].source == "org/set"
    assert isinstance(exs[0].images[0], LazyImage) and load_image(exs[0].images[0]).size == (8, 8)


def test_hub_without_datasets_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(DataError, match=r"pip install 'phaserl\[datasets\]'"):
        load_examples(DatasetSpec(hub="org/set"))


def test_generator_spec():
    exs = load_examples(DatasetSpec(generator="arithmetic", generator_args={"n": 5, "seed": 3}, limit=3))
    assert len(exs) == 3 and exs[0].question.startswith("What is ")


# ---- images --------------------------------------------------------------------------------------


def test_image_references_of_every_kind(tmp_path):
    data = png_bytes()
    b64 = base64.b64encode(data).decode()
    assert resolve_image(f"data:image/png;base64,{b64}", None) == data
    assert resolve_image(b64, None) == data  # bare base64 (not a file)
    assert resolve_image({"bytes": data, "path": None}, None) == data
    assert resolve_image("images/red.png", FIX) == str((FIX / "images/red.png").absolute())
    assert resolve_image(f"file://{FIX}/images/red.png", None) == str(FIX / "images/red.png")
    img = Image.new("RGB", (2, 2))
    assert resolve_image(img, None) is img
    with pytest.raises(DataError, match="remote image URL"):
        resolve_image("https://example.com/a.png", None)
    with pytest.raises(DataError, match="unreadable image bytes"):
        resolve_image(b"not an image", None)
    assert resolve_image("images/nope.png", FIX, check=False).endswith("nope.png")


def test_several_images_per_row_render_in_order():
    ex = load_examples(DatasetSpec(path=str(FIX / "generic.jsonl")))[2]
    prompt = render(ex, "image")
    assert [im.getpixel((0, 0)) for im in prompt.images] == [(220, 30, 30), (30, 30, 220)]
    assert [p["type"] for p in prompt.messages[-1]["content"]] == ["image", "image", "text"]


def test_mixed_text_and_image_examples_render():
    exs = load_examples(DatasetSpec(path=str(FIX / "generic.jsonl")))
    prompts = [render(e, "image") for e in exs]
    assert [len(p.images) for p in prompts] == [0, 1, 2, 1]


# ---- bad rows ------------------------------------------------------------------------------------


def test_first_bad_row_names_file_line_and_field():
    with pytest.raises(DataError) as err:
        load_examples(DatasetSpec(path=str(FIX / "bad.jsonl")))
    assert err.value.line == 2 and err.value.field == "answer"
    assert f"{FIX / 'bad.jsonl'}:2 (field 'answer')" in str(err.value) and "missing answer" in str(err.value)


@pytest.mark.parametrize(
    "line, field, text",
    [
        (3, None, "malformed JSON"),
        (4, "images", "image not found"),
        (6, None, "not an object"),
        (7, "question", "empty question"),
    ],
)
def test_each_kind_of_bad_row(tmp_path, line, field, text):
    rows = (FIX / "bad.jsonl").read_text().splitlines()
    path = tmp_path / "one.jsonl"
    path.write_text("\n" * (line - 1) + rows[line - 1] + "\n")
    with pytest.raises(DataError, match=text) as err:
        load_examples(DatasetSpec(path=str(path), image_root=str(FIX)))
    assert err.value.line == line and err.value.field == field


def test_skip_bad_rows_counts_and_logs_each():
    logs = []
    exs = load_examples(DatasetSpec(path=str(FIX / "bad.jsonl")), skip_bad_rows=True, log=logs.append)
    assert [e.id for e in exs] == ["ok1", "ok2"]
    assert len(logs) == 6 and all(m.startswith("skipping bad row") for m in logs[:5])
    assert "skipped 5 bad rows of 7; loaded 2 examples" in logs[-1]


def test_unreadable_image_is_caught_when_rendered(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"id": "b", "question": "q", "answer": "1", "image": str(FIX / "images/broken.png")}],
    )
    ex = load_examples(DatasetSpec(path=str(path)))[0]  # exists: decoding waits
    with pytest.raises(DataError, match="example b: unreadable image"):
        render(ex, "image")


def test_check_images_off_defers_missing_files():
    exs = load_examples(
        DatasetSpec(path=str(FIX / "bad.jsonl")), skip_bad_rows=True, check_images=False, log=lambda m: None
    )
    assert "missing-image" in [e.id for e in exs]
