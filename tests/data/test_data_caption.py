"""Caption tool: captions land on the right images and rows, existing ones are kept, resume works by id."""

import json
from pathlib import Path

import pytest
from PIL import Image
from scripted_completions import completions_of

from phaserl.data.render import render
from phaserl.data.sources import DatasetSpec, load_examples
from phaserl.data.tools.caption import CAPTION_PROMPTS, caption_command, join_captions

FIX = Path(__file__).parents[1] / "fixtures" / "data"


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
        return completions_of(texts)


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
        "backend": "hf",
        "requests": 3,
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


# ---- the openai back end against a local OpenAI-compatible server ------------------------------------------


def describe(body: dict) -> str:
    """The fake server's caption: the size and first pixel of the image it was sent."""
    import base64
    import io

    (image_part, text_part) = body["messages"][0]["content"]
    assert image_part["type"] == "image_url" and text_part["type"] == "text"
    data = base64.b64decode(image_part["image_url"]["url"].partition(",")[2])
    img = Image.open(io.BytesIO(data))
    return f"a {img.size[0]}x{img.size[1]} image starting with {img.getpixel((0, 0))}"


def colour_rows(tmp_path: Path, n: int = 10) -> Path:
    """n rows with one image of its own colour each, and one row with two more images (all distinct, so
    each request is different)."""
    rows = []
    for k in range(n):
        Image.new("RGB", (8, 8), (20 * k, 0, 0)).save(tmp_path / f"c{k}.png")
        rows.append({"id": f"r{k}", "question": "Colour?", "answer": str(k), "image": f"c{k}.png"})
    for k in (1, 2):
        Image.new("RGB", (8, 8), (0, 20 * k, 0)).save(tmp_path / f"g{k}.png")
    rows.append({"id": "two", "question": "Which?", "answer": "1", "images": ["g1.png", "g2.png"]})
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def test_openai_backend_is_concurrent_retried_and_right(tmp_path):
    from fake_openai_server import FakeOpenAI

    data, out = colour_rows(tmp_path), tmp_path / "out.jsonl"
    with FakeOpenAI(describe, fail_first=2, delay=0.05) as server:
        summary = caption_command(
            "served-vlm",
            str(data),
            str(out),
            backend="openai",
            base_url=server.url,
            concurrency=4,
            log=lambda m: None,
        )
    rows = {r["id"]: r for r in read(out)}
    assert len(rows) == 11 and summary["captioned"] == 11 and summary["failed"] == 0
    assert rows["r3"]["caption"] == "a 8x8 image starting with (60, 0, 0)"
    assert rows["two"]["caption"] == (
        "Image 1: a 8x8 image starting with (0, 20, 0)\nImage 2: a 8x8 image starting with (0, 40, 0)"
    )
    assert rows["r3"]["meta"]["caption_model"] == "served-vlm"
    assert server.received == 12 + 2  # 12 images, the first 2 answers were 503 and retried
    assert sum(server.answered.values()) == 12 and max(server.answered.values()) == 1
    assert server.max_in_flight > 1 and summary["requests"] == 12
    assert not Path(str(out) + ".parts").exists()  # the per-image journal goes once every row is written
    again = caption_command(
        "served-vlm", str(data), str(out), backend="openai", base_url="http://127.0.0.1:9", log=lambda m: None
    )
    assert again["resumed"] == 11 and again["requests"] == 0  # nothing left: no server needed


def test_openai_client_error_is_not_retried(tmp_path):
    from fake_openai_server import FakeOpenAI

    data, out = colour_rows(tmp_path, 2), tmp_path / "out.jsonl"
    with FakeOpenAI(describe, api_key="right") as server:
        summary = caption_command(
            "m",
            str(data),
            str(out),
            backend="openai",
            base_url=server.url,
            api_key="wrong",
            retries=3,
            log=lambda m: None,
        )
        assert server.received == 4  # one 401 per image, no retries
    # 3 rows, 4 images: no row is written, so a rerun with the right key asks for them again
    assert summary["failed"] == 3 and summary["request_errors"] == 4 and not out.read_text().strip()
    from typer.testing import CliRunner

    from phaserl.cli import app

    with FakeOpenAI(describe, api_key="right") as server:
        r = CliRunner().invoke(
            app,
            [
                "data",
                "caption",
                "--backend",
                "openai",
                "--model",
                "m",
                "--input",
                str(data),
                "--output",
                str(out),
                "--base-url",
                server.url,
                "--retries",
                "0",
            ],
        )
    assert r.exit_code == 1 and "4 image(s) not captioned" in r.output


def test_openai_killed_run_continues_without_asking_twice(tmp_path):
    """A run killed mid-way (SIGKILL) and rerun: every image answered before the kill is not asked again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from fake_openai_server import FakeOpenAI

    data, out = colour_rows(tmp_path), tmp_path / "out.jsonl"
    parts = Path(str(out) + ".parts")
    with FakeOpenAI(describe, hang_after=5) as server:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CAPTION_KEY": "k"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "phaserl",
                "data",
                "caption",
                "--backend",
                "openai",
                "--model",
                "served-vlm",
                "--input",
                str(data),
                "--output",
                str(out),
                "--base-url",
                server.url,
                "--api-key-env",
                "CAPTION_KEY",
                "--concurrency",
                "3",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while sum(server.answered.values()) < 5 and time.time() < deadline:
            assert proc.poll() is None, "the caption run ended before the kill"
            time.sleep(0.1)
        time.sleep(0.5)  # the client journals what it received
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        first = sum(server.answered.values())
        assert first == 5
        journaled = len(read(out)) + (len(parts.read_text().splitlines()) if parts.exists() else 0)
        assert journaled >= 5  # answered images are on disk (rows, or parts of the two-image row)
        server.hang_after = None
        summary = caption_command(
            "served-vlm", str(data), str(out), backend="openai", base_url=server.url, log=lambda m: None
        )
    assert max(server.answered.values()) == 1 and sum(server.answered.values()) == 12  # none asked twice
    assert summary["requests"] == 12 - first
    rows = read(out)
    assert sorted(r["id"] for r in rows) == sorted([f"r{k}" for k in range(10)] + ["two"])
    assert all(r.get("caption") for r in rows)
