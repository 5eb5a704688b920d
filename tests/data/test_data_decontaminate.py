"""Decontamination finds planted text and image duplicates of benchmark items and nothing in a clean set."""

import json
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from phaserl.data.tools.decontaminate import decontaminate_command, read_benchmark, resolve_against
from phaserl.data.tools.overlap import HashIndex, NgramIndex, hash_image, words

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"

BENCH_TEXT = (
    "A farmer has a rectangular field whose length is three times its width. If the perimeter "
    "of the field is 48 metres, what is the area of the field in square metres?"
)
BENCH_IMAGE_Q = (
    "In the figure the two circles touch each other and both touch the sides of the square. "
    "What fraction of the square is shaded?"
)
SHORT_Q = "How many triangles can you find in the picture?"  # 9 words: shorter than a 13-gram


def pattern(seed: int, size=(96, 96)) -> Image.Image:
    """A random arrangement of shapes: distinct seeds give distinct perceptual hashes."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x, y = rng.randrange(size[0] - 20), rng.randrange(size[1] - 20)
        box = [x, y, x + rng.randrange(10, 40), y + rng.randrange(10, 40)]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(
            box, fill=tuple(rng.randrange(256) for _ in range(3))
        )
    return img


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Three benchmark items; training: two planted duplicates, one short question, five clean."""
    monkeypatch.setenv("PHASERL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "bench_img").mkdir()
    (tmp_path / "train_img").mkdir()
    for k in (1, 2, 3):
        pattern(k).save(tmp_path / "bench_img" / f"{k}.png")
    bench = write_jsonl(
        tmp_path / "bench.jsonl",
        [
            {"id": "b1", "question": BENCH_TEXT, "answer": "108"},
            {"id": "b2", "question": BENCH_IMAGE_Q, "answer": "1/2", "image": "bench_img/2.png"},
            {
                "id": "b3",
                "question": SHORT_Q,
                "options": ["3", "4", "5"],
                "answer": "B",
                "image": "bench_img/3.png",
            },
        ],
    )
    # image duplicate: the benchmark picture resized and re-encoded as JPEG, asked with other words
    pattern(2).resize((120, 120)).save(tmp_path / "train_img" / "dup.jpg", quality=85)
    for k in range(10, 16):
        pattern(k).save(tmp_path / "train_img" / f"{k}.png")
    train = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {
                "id": "text-dup",
                "question": "Solve: " + BENCH_TEXT.upper().replace(",", " ,").replace(".", " . "),
                "answer": "108",
            },
            {
                "id": "image-dup",
                "question": "Find the shaded part.",
                "answer": "1/2",
                "image": "train_img/dup.jpg",
            },
            {
                "id": "short-same-text-other-image",
                "question": SHORT_Q,
                "answer": "4",
                "image": "train_img/10.png",
            },
            {
                "id": "clean-1",
                "question": "A farmer has a square field whose side is 12 metres. What is its area in "
                "square metres?",
                "answer": "144",
            },
            {"id": "clean-2", "question": "What is 3 + 4?", "answer": "7"},
            {
                "id": "clean-3",
                "question": "In the figure, what fraction of the circle is shaded?",
                "answer": "1/4",
                "image": "train_img/11.png",
            },
            {
                "id": "clean-4",
                "question": "How many circles are there?",
                "answer": "5",
                "image": "train_img/12.png",
            },
            {
                "id": "clean-5",
                "question": "Which shape is the largest?",
                "answer": "A",
                "images": ["train_img/13.png", "train_img/14.png"],
            },
        ],
    )
    return tmp_path, train, bench


def test_planted_duplicates_found_and_clean_items_kept(world):
    tmp, train, bench = world
    result = decontaminate_command(str(train), [str(bench)], str(tmp / "clean.jsonl"), log=lambda m: None)
    assert result["removed"] == 2 and result["kept"] == 6
    report = json.loads(Path(result["report"]).read_text())
    removed = {item["id"]: item["reasons"] for item in report["removed_items"]}
    assert set(removed) == {"text-dup", "image-dup"}
    (text_reason,) = removed["text-dup"]
    assert (
        text_reason["type"] == "text"
        and text_reason["benchmark_id"] == "b1"
        and text_reason["overlap"] == 1.0
    )
    (image_reason,) = removed["image-dup"]
    assert (
        image_reason["type"] == "image"
        and image_reason["benchmark_id"] == "b2"
        and image_reason["distance"] <= 4
    )
    kept_ids = [json.loads(line)["id"] for line in (tmp / "clean.jsonl").read_text().splitlines()]
    assert kept_ids == ["short-same-text-other-image", "clean-1", "clean-2", "clean-3", "clean-4", "clean-5"]
    assert result["removed_by"] == {"text:bench": 1, "image:bench": 1}


def test_clean_set_has_no_hits(world):
    tmp, train, bench = world
    rows = [json.loads(line) for line in train.read_text().splitlines() if "clean" in line]
    clean = write_jsonl(tmp / "only_clean.jsonl", rows)
    result = decontaminate_command(str(clean), [str(bench)], str(tmp / "out.jsonl"), log=lambda m: None)
    assert result["removed"] == 0 and result["kept"] == 5


def test_kept_rows_load_back_with_their_images(world):
    from phaserl.data.sources import DatasetSpec, load_examples

    tmp, train, bench = world
    (tmp / "sub").mkdir()
    decontaminate_command(str(train), [str(bench)], str(tmp / "sub" / "clean.jsonl"), log=lambda m: None)
    exs = load_examples(DatasetSpec(path=str(tmp / "sub" / "clean.jsonl")))
    assert len(exs) == 6 and len(exs[-1].images) == 2  # image paths rewritten relative to the new folder


def test_threshold_controls_partial_text_overlap(world):
    tmp, _, bench = world
    half = " ".join(BENCH_TEXT.split()[:18]) + " and then something else entirely different happens here"
    train = write_jsonl(tmp / "partial.jsonl", [{"id": "p", "question": half, "answer": "1"}])
    strict = decontaminate_command(str(train), [str(bench)], str(tmp / "o1.jsonl"), threshold=0.9, log=print)
    loose = decontaminate_command(str(train), [str(bench)], str(tmp / "o2.jsonl"), threshold=0.2, log=print)
    assert strict["removed"] == 0 and loose["removed"] == 1


def test_ngram_index_units():
    index = NgramIndex(n=3, min_tokens=2)
    a = index.add("The cat sat on the mat")
    index.add("two words")
    assert words("The CAT, sat; on\\frac{the} <image1> mat!") == [
        "the",
        "cat",
        "sat",
        "on",
        "frac",
        "the",
        "mat",
    ]
    hits = index.matches("yesterday the cat sat on the mat again", threshold=0.5)
    assert [h.item for h in hits] == [a] and hits[0].overlap == 1.0
    assert index.matches("the cat sat somewhere else", threshold=0.5) == []  # 1 of 4 trigrams
    assert [h.item for h in index.matches("Two words.", threshold=0.5)] == [1]


def test_hash_index_and_uniform_images():
    index = HashIndex()
    index.add(0, hash_image(pattern(1)))
    assert hash_image(Image.new("RGB", (32, 32), "red")) is None  # uniform: never matched
    assert [h.item for h in index.matches(hash_image(pattern(1).resize((50, 50))), 4)] == [0]
    assert index.matches(hash_image(pattern(99)), 4) == []


def test_unknown_benchmark_name():
    with pytest.raises(ValueError, match="neither a file nor a known benchmark"):
        resolve_against("no-such-bench")


def test_shared_benchmarks_by_name(tmp_path):
    if not SHARED.exists():
        pytest.skip("../shared/data is absent")
    gsm = json.loads((SHARED / "gsm8k" / "test.jsonl").read_text().splitlines()[5])
    mv = [json.loads(x) for x in (SHARED / "mathvision" / "testmini.jsonl").read_text().splitlines()]
    item = next(r for r in mv if len(words(r["question"])) >= 13)
    Image.open(SHARED / "mathvision" / item["image"]).convert("RGB").save(tmp_path / "copy.png")
    train = write_jsonl(
        tmp_path / "t.jsonl",
        [
            {"id": "gsm-copy", "question": gsm["question"], "answer": "1"},
            {
                "id": "mv-image-copy",
                "question": "Answer the question in the picture.",
                "answer": "1",
                "image": "copy.png",
            },
            {"id": "fresh", "question": "What is 17 + 25?", "answer": "42"},
        ],
    )
    mini = str(SHARED / "mathvision" / "testmini.jsonl")  # the 304-item subset keeps hashing quick
    result = decontaminate_command(str(train), ["gsm8k", mini], str(tmp_path / "o.jsonl"), log=lambda m: None)
    report = json.loads(Path(result["report"]).read_text())
    assert {i["id"] for i in report["removed_items"]} == {"gsm-copy", "mv-image-copy"}
    assert (
        result["benchmarks"]["gsm8k"]["items"] == 1319
        and result["benchmarks"]["testmini"]["with_images"] == 304
    )
    assert len(read_benchmark("mathvista", SHARED / "mathvista" / "testmini.json")) == 1000
