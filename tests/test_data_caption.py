"""Caption tool: captions land on the right images and rows, existing ones are kept, resume works by id."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from phaserl.data.render import render
from phaserl.data.sources import DatasetSpec, load_examples
from phaserl.data.tools.caption import CAPTION_PROMPTS, caption_command, join_captions
from phaserl.types import Completions

FIX = Path(__file__).parent / "fixtures" / "data"


class DescribingEngine:
    """A fake VLM whose 'caption' states the image's size and first pixel, so each caption names its image."""

    is_vlm = True

    def __init__(self, fail_after: int | None = None):
        self.calls: list[int] = []  # images per call
        self.prompts = []
        self.fail_after = fail_after

    def generate(self, prompts, params):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("killed")
        assert params.n == 1 and params.temperature == 0.0
        self.calls.append(len(prompts))
        self.prompts += prompts
        texts = []
        for p in prompts:
            (img,) = p.images
            texts.append(f" a {img.size[0]}x{img.size[1]} image starting with {img.getpixel((0, 0))} ")
        n = len(texts)
        return Completions(
            prompt_ids=[[0]] * n,
            completion_ids=[[0]] * n,
            texts=texts,
            logp=[torch.zeros(1)] * n,
            truncated=[False] * n,
        )


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(out: Path, engine, **kw) -> dict:
    return caption_command(
        "fake-vlm", str(FIX / "generic.jsonl"), str(out), engine=engine, log=lambda m: None, **kw
    )


def test_captions_per_image_and_pass_through(tmp_path):
    out = tmp_path / "captioned.jsonl"
    engine = DescribingEngine()
    summary = run(out, engine)
    rows = {r["id"]: r for r in read(out)}
    assert list(rows) == ["g1", "g2", "g3", "4"]
    assert "caption" not in rows["g1"]  # text-only: untouched
    assert rows["g2"]["caption"] == "A red square."  # already captioned: kept
    assert rows["g3"]["caption"] == (
        "Image 1: a 16x16 image starting with (220, 30, 30)\n"
        "Image 2: a 16x16 image starting with (30, 30, 220)"
    )
    assert rows["4"]["caption"] == "a 32x32 image starting with (255, 255, 255)"
    assert rows["4"]["meta"]["caption_model"] == "fake-vlm"
    assert summary == {
        "output": str(out),
        "total": 4,
        "resumed": 0,
        "captioned": 2,
        "kept_existing": 1,
        "text_only": 1,
        "empty": 0,
        "failed": 0,
    }
    prompt = engine.prompts[0]
    assert [p["type"] for p in prompt.messages[0]["content"]] == ["image", "text"]
    assert prompt.messages[0]["content"][1]["text"] == CAPTION_PROMPTS["dense"]


def test_output_loads_and_renders_image_caption_view(tmp_path):
    out = tmp_path / "sub" / "captioned.jsonl"
    run(out, DescribingEngine())
    exs = load_examples(DatasetSpec(path=str(out)))
    prompt = render(exs[3], "image+caption")
    assert "Caption: a 32x32 image" in prompt.messages[-1]["content"][-1]["text"] and len(prompt.images) == 1


def test_overwrite_recaptions(tmp_path):
    out = tmp_path / "c.jsonl"
    run(out, DescribingEngine(), overwrite=True, prompt_template="Describe. Question: {question}")
    rows = {r["id"]: r for r in read(out)}
    assert rows["g2"]["caption"] == "a 16x16 image starting with (220, 30, 30)"


def test_question_in_custom_prompt(tmp_path):
    engine = DescribingEngine()
    run(tmp_path / "c.jsonl", engine, prompt_template="Describe what matters for: {question}")
    assert (
        engine.prompts[0].messages[0]["content"][-1]["text"]
        == "Describe what matters for: Which image is blue?"
    )


def test_resume_by_id(tmp_path):
    out = tmp_path / "c.jsonl"
    with pytest.raises(RuntimeError, match="killed"):
        run(out, DescribingEngine(fail_after=0), batch_size=2)
    assert [r["id"] for r in read(out)] == ["g1", "g2"]  # first chunk: nothing for the model, written
    with open(out, "a") as f:
        f.write('{"id": "g3", "capt')  # torn write
    engine = DescribingEngine()
    summary = run(out, engine, batch_size=2)
    assert [r["id"] for r in read(out)] == ["g1", "g2", "g3", "4"]
    assert summary["resumed"] == 2 and summary["captioned"] == 2 and engine.calls == [3]


def test_unreadable_image_is_recorded(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps({"id": "x", "question": "q", "answer": "1", "image": str(FIX / "images/broken.png")})
        + "\n"
    )
    out = tmp_path / "c.jsonl"
    summary = caption_command("fake", str(data), str(out), engine=DescribingEngine(), log=lambda m: None)
    (row,) = read(out)
    assert (
        summary["failed"] == 1 and "unreadable image" in row["meta"]["caption_error"] and "caption" not in row
    )


def test_text_only_model_is_refused(tmp_path):
    class TextEngine(DescribingEngine):
        is_vlm = False

    with pytest.raises(ValueError, match="vision-language model"):
        run(tmp_path / "c.jsonl", TextEngine())


def test_join_captions():
    assert join_captions([" one "]) == "one"
    assert join_captions(["a", "b"]) == "Image 1: a\nImage 2: b"


def test_tiny_qwen2_5_vl(tmp_path):
    for k, colour in enumerate(["red", "blue"]):
        Image.new("RGB", (56, 56), colour).save(tmp_path / f"{k}.png")
    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"i{k}", "question": "Colour?", "answer": c, "image": f"{k}.png"}) + "\n"
            for k, c in enumerate(["red", "blue"])
        )
    )
    out = tmp_path / "out" / "c.jsonl"
    # sampled, so the random tiny model writes some tokens (greedy it emits only newlines)
    summary = caption_command(
        "tiny:qwen2_5_vl",
        str(data),
        str(out),
        batch_size=2,
        max_new_tokens=6,
        temperature=1.0,
        seed=1,
        log=lambda m: None,
    )
    rows = read(out)
    assert [r["id"] for r in rows] == ["i0", "i1"] and summary["captioned"] + summary["empty"] == 2
    for r in rows:
        if "caption" in r:
            assert isinstance(r["caption"], str) and r["caption"].strip() and r["meta"]["caption_model"]
        assert Path(out.parent, r["images"][0]).resolve() == (tmp_path / f"{r['id'][1]}.png").resolve()
    again = caption_command(
        "tiny:qwen2_5_vl", str(data), str(out), engine=DescribingEngine(), log=lambda m: None
    )
    assert again["resumed"] == 2 and again["captioned"] == 0
