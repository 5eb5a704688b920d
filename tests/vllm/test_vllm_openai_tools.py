"""phaserl's OpenAI-compatible clients against real vLLM servers on loopback: `phaserl data caption --backend
openai` (a tiny Qwen2.5-VL) and `phaserl score mathverse:testmini --llm-base-url` (SmolLM2 extracting and
judging), each on 10 items, killed mid-way and rerun.

Between the client and vLLM sits the counting proxy of tests/fake_openai_server.py (its reply function
forwards the request to vLLM), so the test sees which requests were answered, and can make the proxy hold
requests after a few answers, as a server would be mid-batch when the client is killed."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import vllm_server
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the proxy
from fake_openai_server import FakeOpenAI  # noqa: E402

pytestmark = pytest.mark.vllm


def forward(url: str):
    """A reply function for the proxy: the same request to the vLLM server at `url`, its answer's text."""

    def reply(body: dict) -> str:
        req = urllib.request.Request(
            f"{url}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=300) as resp:
            return json.loads(resp.read())["choices"][0]["message"]["content"] or ""

    return reply


def run_then_kill(argv: list[str], proxy: FakeOpenAI, answered: int) -> None:
    """Start `python -m phaserl ARGV`, SIGKILL it once the proxy has answered `answered` requests."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "phaserl", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.time() + 600
    while sum(proxy.answered.values()) < answered and time.time() < deadline:
        assert proc.poll() is None, "the run ended before the kill"
        time.sleep(0.2)
    time.sleep(1.0)  # the client journals what it received
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert sum(proxy.answered.values()) == answered


@pytest.fixture(scope="module")
def vl_server(tiny_vl_path, tmp_path_factory):
    with vllm_server(
        tiny_vl_path,
        tmp_path_factory.mktemp("vl") / "vllm_serve.log",
        extra=["--limit-mm-per-prompt", json.dumps({"image": 1})],
    ) as url:
        yield url


@pytest.fixture(scope="module")
def judge_server(smollm2_path, tmp_path_factory):
    with vllm_server(smollm2_path, tmp_path_factory.mktemp("judge") / "vllm_serve.log") as url:
        yield url


def test_caption_openai_backend_on_vllm_killed_and_rerun(vl_server, tiny_vl_path, tmp_path):
    from phaserl.data.tools.caption import caption_command
    from phaserl.openai_api import ChatClient

    rows = []
    for k in range(10):
        Image.new("RGB", (56, 56), (25 * k, 100, 200 - 20 * k)).save(tmp_path / f"{k}.png")
        rows.append({"id": f"i{k}", "question": "Colour?", "answer": str(k), "image": f"{k}.png"})
    data, out = tmp_path / "d.jsonl", tmp_path / "out" / "captioned.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with FakeOpenAI(forward(vl_server), hang_after=4) as proxy:
        run_then_kill(
            [
                "data",
                "caption",
                "--backend",
                "openai",
                "--model",
                tiny_vl_path,
                "--input",
                str(data),
                "--output",
                str(out),
                "--base-url",
                proxy.url,
                "--concurrency",
                "3",
                "--max-new-tokens",
                "8",
            ],
            proxy,
            answered=4,
        )
        proxy.hang_after = None
        summary = caption_command(
            tiny_vl_path,
            str(data),
            str(out),
            backend="openai",
            base_url=proxy.url,
            max_new_tokens=8,
            log=lambda m: None,
        )
    assert sum(proxy.answered.values()) == 10 and max(proxy.answered.values()) == 1  # nothing asked twice
    assert summary["resumed"] + summary["captioned"] + summary["empty"] == 10 and summary["requests"] == 6
    got = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(got) == sorted(r["id"] for r in rows)
    # greedy: the journaled caption is what the server says for that image
    from phaserl.data.images import load_image
    from phaserl.data.schema import Example
    from phaserl.data.tools.caption import openai_messages

    ex = Example(id="i7", question="Colour?")
    direct = ChatClient(vl_server + "/v1", tiny_vl_path, max_tokens=8).complete(
        openai_messages(load_image(tmp_path / "7.png"), "dense", ex)
    )
    assert got["i7"].get("caption", "") == direct.strip()


def verse_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A 10-item mathverse/testmini.json (the official fields) and predictions for it."""
    items = [
        ("1", "multi-choice", "D", "The angle CED is 140 degrees, so the answer is D."),
        ("2", "free-form", "2191.7", "The distance is 2191.7 metres."),
        ("3", "free-form", "5", "Solving 2x = 12 gives x = 6."),
        ("4", "multi-choice", "A", "Option A is correct."),
        ("5", "free-form", "12", "The area is 12."),
        ("6", "free-form", "0.5", "The probability is 1/2."),
        ("7", "multi-choice", "C", "I choose B."),
        ("8", "free-form", "30", "Angle ABC measures 30 degrees."),
        ("9", "free-form", "7", "The answer is 7."),
        ("10", "multi-choice", "B", "It is (B)."),
    ]
    rows = [
        {
            "sample_index": i,
            "problem_index": i,
            "problem_version": "Vision Dominant",
            "question": f"Question {i}?",
            "image": f"images_version_1/image_{i}.png",
            "answer": gold,
            "question_type": qtype,
            "metadata": {
                "split": "testmini",
                "source": "GeoQA",
                "subject": "Plane Geometry",
                "subfield": "Angle",
            },
            "query_wo": "",
            "query_cot": "",
        }
        for i, qtype, gold, _ in items
    ]
    data = tmp_path / "bench"
    (data / "mathverse").mkdir(parents=True)
    (data / "mathverse" / "testmini.json").write_text(json.dumps(rows))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "response": r}) + "\n" for i, _, _, r in items))
    return data, preds


def test_score_mathverse_with_an_llm_judge_on_vllm_killed_and_rerun(judge_server, smollm2_path, tmp_path):
    from phaserl.eval.score import score_command

    data, preds = verse_dir(tmp_path)
    cache, out = tmp_path / "llm_cache.jsonl", tmp_path / "result.json"
    args = [
        "mathverse:testmini",
        str(preds),
        "--data-dir",
        str(data),
        "--llm-model",
        smollm2_path,
        "--llm-cache",
        str(cache),
    ]
    with FakeOpenAI(forward(judge_server), hang_after=5) as proxy:
        run_then_kill(
            ["score", *args, "--llm-base-url", proxy.url, "--llm-concurrency", "4"], proxy, answered=5
        )
        proxy.hang_after = None
        result = score_command(
            "mathverse:testmini",
            preds,
            data,
            out,
            llm_base_url=proxy.url,
            llm_model=smollm2_path,
            llm_cache=cache,
            echo=lambda m: None,
        )
        total = sum(proxy.answered.values())
        assert max(proxy.answered.values()) == 1  # nothing asked twice
        assert total >= 10 and result["llm"]["requests"] == total - 5  # 10 extractions, then the judge's
        assert result["total"] == 10 and result["extraction"] == {f"llm:{smollm2_path}": 10}
        saved = json.loads(out.read_text())
        assert saved["llm"]["model"] == smollm2_path and saved["llm"]["extract_prompt"].startswith(
            "Below are"
        )
        assert saved["llm"]["judge_prompt"] and saved["scorer"] == "mathverse_llm_judge"
        again = score_command(
            "mathverse:testmini",
            preds,
            data,
            None,
            llm_base_url=proxy.url,
            llm_model=smollm2_path,
            llm_cache=cache,
            echo=lambda m: None,
        )
        assert sum(proxy.answered.values()) == total  # the rerun costs nothing
        assert again["llm"]["requests"] == 0 and again["correct"] == result["correct"]


def test_caption_vllm_backend_in_process(tiny_vl_path, tmp_path):
    """`--backend vllm`: phaserl's in-process VLLMEngine, one batch per chunk of rows, resumable by id."""
    from phaserl.data.tools.caption import caption_command

    for k in range(3):
        Image.new("RGB", (56, 56), (80 * k, 40, 200)).save(tmp_path / f"{k}.png")
    data, out = tmp_path / "d.jsonl", tmp_path / "c.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"v{k}", "question": "Colour?", "answer": str(k), "image": f"{k}.png"}) + "\n"
            for k in range(3)
        )
        + json.dumps({"id": "t", "question": "1+1?", "answer": "2"})
        + "\n"
    )
    summary = caption_command(
        tiny_vl_path,
        str(data),
        str(out),
        backend="vllm",
        batch_size=2,
        max_new_tokens=6,
        temperature=1.0,
        seed=1,
        log=lambda m: None,
    )  # sampled: a random model writes words
    assert (
        summary["requests"] == 3
        and summary["captioned"] + summary["empty"] == 3
        and summary["text_only"] == 1
    )
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["v0", "v1", "v2", "t"]  # batches of 2 rows, each appended in order
    again = caption_command(tiny_vl_path, str(data), str(out), backend="vllm", log=lambda m: None)
    assert again["resumed"] == 4 and again["requests"] == 0  # nothing to do: no engine is even started
