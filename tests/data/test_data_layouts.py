"""The recipes' adapters on rows in the published layouts of the training sets (tests/fixtures/data/layouts,
made by make_layouts.py there): field names, nesting and image field types as released."""

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from phaserl.cli import app
from phaserl.data.images import LazyImage, load_image
from phaserl.data.render import render
from phaserl.data.schema import DataError
from phaserl.data.sources import DatasetSpec, load_examples

ROOT = Path(__file__).resolve().parents[2]
L = ROOT / "tests/fixtures/data/layouts"
FOREIGN = "file:///mnt/petrelfs/lmm-r1/data/mathv60k_img/"  # the prefix make_layouts.py wrote into the rows


@pytest.fixture(autouse=True)
def _hub_cache(tmp_path, monkeypatch):
    """`datasets` caches what it loads: keep that inside the test (its config is read at import, so the
    setting itself is patched, not the environment)."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")


def load(**spec):
    return load_examples(DatasetSpec(**spec), log=lambda *_: None)


def pixel(ref) -> tuple:
    return load_image(ref).getpixel((8, 8))


def test_deepscaler_release_json_list():
    exs = load(path=str(L / "deepscaler/deepscaler.json"), adapter="deepscaler")
    assert [e.answer for e in exs] == ["4", "9", "55"]
    assert exs[0].question.startswith("Let $a$") and "boxed{4}" in exs[0].meta["solution"]
    assert all(not e.images for e in exs)


def test_virl39k_release_parquet_with_relative_image_paths():
    exs = load(path=str(L / "virl39k/39Krelease.parquet"), adapter="virl39k")
    assert [e.id for e in exs] == ["MMK12-0001", "M3CoT-0002"]
    assert [e.answer for e in exs] == ["70^\\circ", "A"]  # the \boxed{} of the release is removed
    assert [e.answer_type for e in exs] == ["auto", "choice"]
    assert not exs[0].question.startswith("<image>")
    assert exs[0].meta["PassRate_7BTrained"] == 0.25 and exs[1].source == "M3CoT"
    assert exs[1].images == [str(L / "virl39k/images/M3CoT-0002-0.png")]
    assert pixel(exs[1].images[0]) == (220, 30, 30)


def test_virl39k_hub_layout_images_stay_undecoded_until_rendered():
    exs = load(hub=str(L / "virl39k_hub"), adapter="virl39k")
    assert [e.id for e in exs] == ["MMK12-0001", "M3CoT-0003"]
    assert [len(e.images) for e in exs] == [1, 2]
    assert all(isinstance(ref, LazyImage) for e in exs for ref in e.images)  # no PIL, no bytes held
    prompt = render(exs[1], "image")
    assert [im.getpixel((8, 8)) for im in prompt.images] == [(220, 30, 30), (30, 30, 220)]
    assert exs[1].answer == "B" and exs[1].answer_type == "choice"


def test_geometry3k_hub_layout():
    exs = load(hub=str(L / "geometry3k_hub"), adapter="geometry3k", split="train")
    assert [e.id for e in exs] == ["2401", "2402"]
    assert [e.answer for e in exs] == ["7.6", "24"]
    assert exs[0].question == "Find x. Round to the nearest tenth."
    assert exs[0].meta == {"choices": ["3.8", "5.2", "7.6", "9.1"], "ground_truth": "C"}
    assert load_image(exs[1].images[0]).getpixel((8, 8)) == (30, 160, 30)


def test_mathv360k_json_list_needs_its_image_root():
    path = L / "mathv360k/train_samples_all_tuning.json"
    exs = load(path=str(path), adapter="mathv360k", image_root=str(L / "mathv360k/data_images"))
    assert [(e.id, e.answer, e.answer_type, e.source) for e in exs] == [
        ("identity_12", "1", "auto", "TabMWP"),
        ("identity_3001", "A", "choice", "GeoQA+"),
    ]
    assert pixel(exs[0].images[0]) == (30, 30, 220)
    with pytest.raises(DataError) as err:  # paths are relative to data_images/, not to the JSON's folder
        load(path=str(path), adapter="mathv360k")
    msg = str(err.value)
    assert f"{path}[0]" in msg and "(field 'images')" in msg and "image_root" in msg


def test_vermulti_foreign_paths_are_remapped():
    path = L / "vermulti/mathv60k_message.jsonl"
    with pytest.raises(DataError) as err:
        load(path=str(path), adapter="vermulti")
    msg = str(err.value)
    assert f"{path}:1 (field 'images')" in msg and "/mnt/petrelfs/" in msg and "image_path_map" in msg
    exs = load(path=str(path), adapter="vermulti", image_path_map={FOREIGN: "mathv60k_img/"})
    assert exs[0].images == [str(L / "vermulti/mathv60k_img/geoqa/1.png")]
    assert [e.answer for e in exs] == ["12", "1"] and exs[0].meta["system"] == "You are a helpful assistant."
    assert pixel(exs[1].images[0]) == (220, 30, 30)
    # the prefix may be written without file://, and an absolute new prefix needs no image_root
    exs = load(
        path=str(path),
        adapter="vermulti",
        image_path_map={FOREIGN.removeprefix("file://"): str(L / "vermulti/mathv60k_img") + "/"},
    )
    assert exs[1].images == [str(L / "vermulti/mathv60k_img/red_2.png")]


def test_hub_rows_with_relative_paths_and_no_image_root(tmp_path):
    import datasets

    folder = tmp_path / "rel_hub" / "data"
    folder.mkdir(parents=True)
    datasets.Dataset.from_dict({"question": ["q?"], "answer": ["1"], "image": ["imgs/a.png"]}).to_parquet(
        folder / "train-00000-of-00001.parquet"
    )
    with pytest.raises(DataError) as err:
        load(hub=str(tmp_path / "rel_hub"))
    msg = str(err.value)
    assert "[train][0] (field 'images')" in msg and "no image_root" in msg
    (tmp_path / "root" / "imgs").mkdir(parents=True)
    Image.new("RGB", (4, 4), "red").save(tmp_path / "root" / "imgs" / "a.png")
    assert load(hub=str(tmp_path / "rel_hub"), image_root=str(tmp_path / "root"))[0].images == [
        str(tmp_path / "root" / "imgs" / "a.png")
    ]


def test_dry_run_fails_on_an_unresolvable_image_naming_file_line_and_field():
    path = L / "vermulti/mathv60k_message.jsonl"
    r = CliRunner().invoke(
        app,
        [
            "train",
            str(ROOT / "recipes/smoke_tiny.yaml"),
            "--dry-run",
            "--set",
            f"stages.0.data=[{{path: {path}, adapter: vermulti}}]",
        ],
    )
    assert r.exit_code == 2, r.output
    assert f"{path}:1 (field 'images')" in r.output and "image_path_map" in r.output
    ok = CliRunner().invoke(
        app,
        [
            "train",
            str(ROOT / "recipes/smoke_tiny.yaml"),
            "--dry-run",
            "--set",
            f"stages.0.data=[{{path: {path}, adapter: vermulti, "
            f"image_path_map: {{'{FOREIGN}': mathv60k_img/}}}}]",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "mathv60k_message (2 ex" in ok.output


def test_unreachable_hub_dataset_is_missing_data(monkeypatch):
    """Offline: a hub dataset is data that is not here (a dry run still prints its plan), not a bad row."""
    import datasets

    from phaserl.data.schema import DataMissing

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'org/set' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataMissing, match="org/set: cannot load from the hub"):
        load(hub="org/set")
    r = CliRunner().invoke(
        app,
        [
            "train",
            str(ROOT / "recipes/smoke_tiny.yaml"),
            "--dry-run",
            "--set",
            "stages.0.data=[{hub: org/set}]",
        ],
    )
    assert r.exit_code == 0 and "[missing: org/set: cannot load from the hub" in r.output
