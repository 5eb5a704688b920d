"""The report pages in headless Chromium (Debian's `chromium`; skipped when it is absent), driven over the
DevTools protocol: no console errors, curves and the rollout table present, filters that keep only what they
say. Screenshots go to tests/artifacts/ (gitignored); each test prints its path.

The pages come from tests/report/test_report.py's scripted 2-stage run and scripted eval, and from a real tiny
2-stage training run (the smoke recipe's first two stages, 2 steps each)."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from test_report import FIX_EVAL, scripted_eval, scripted_run

from phaserl.report import write_report

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return scripted_run(tmp_path_factory.mktemp("report") / "run")


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory) -> Path:
    return scripted_eval(tmp_path_factory.mktemp("eval") / "ev")


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


class Browser:
    """One headless Chromium page: navigate, evaluate JS, collect console errors, screenshot."""

    def __init__(self, exe: str):
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="phaserl-chromium-")
        self.proc = subprocess.Popen(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                "--window-size=1400,1000",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        t0 = time.time()
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.time() - t0 > 60:
                self.close()
                raise RuntimeError(f"chromium did not start: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as resp:
            page = next(t for t in json.load(resp) if t["type"] == "page")
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None))
        self.next_id, self.events = 0, []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 60) -> None:
        if any(e.get("method") == event for e in self.events):
            return
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = json.loads(self.ws.recv(timeout=timeout))
            self.events.append(msg)
            if msg.get("method") == event:
                return
        raise TimeoutError(event)

    def open(self, path: Path) -> None:
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Page.navigate", url=Path(path).resolve().as_uri())
        self.wait_for("Page.loadEventFired")

    def js(self, expression: str):
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise AssertionError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads the page produced so far."""
        out = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                out.append(str(p["exceptionDetails"]))
            elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(p["entry"].get("text", ""))
        return out

    def screenshot(self, path: Path) -> Path:
        m = self.send("Page.getLayoutMetrics")
        size = m.get("cssContentSize") or m["contentSize"]
        shot = self.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1},
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        if getattr(self, "stack", None) is not None:
            self.stack.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser():
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    pytest.importorskip("websockets", reason="the DevTools client needs websockets (pip install -e '.[dev]')")
    b = Browser(exe)
    yield b
    b.close()


def _filter(b: Browser, select_id: str, value: str) -> None:
    b.js(
        f"(() => {{ const s = document.getElementById('{select_id}'); s.value = '{value}';"
        "s.dispatchEvent(new Event('change')); })()"
    )


def _rows(b: Browser) -> list[str]:
    return b.js(
        "Array.from(document.querySelectorAll('#rollouts tbody tr.rollout')).map(r => r.dataset.correct)"
    )


def check_run_page(b: Browser, html: Path, shot: str) -> None:
    """Loads without console errors; curves and the rollout table present; filtering to incorrect answers
    shows only those, as many as the embedded data holds."""
    b.open(html)
    assert b.js("document.querySelectorAll('section#curves svg.chart path.series').length") > 0
    assert b.js("document.querySelectorAll('section#curves svg.chart').length") >= 6
    assert b.js("document.querySelectorAll('svg.chart line.boundary').length") > 0  # stage boundaries
    payload = b.js("JSON.parse(document.getElementById('payload').textContent).samples.rows")
    wrong = sum(r["correct"] is False for r in payload)
    assert 0 < wrong < len(payload)
    assert len(_rows(b)) == min(20, len(payload))
    print(f"screenshot: {b.screenshot(ARTIFACTS / shot)}")
    _filter(b, "f-correct", "incorrect")
    shown = _rows(b)
    assert shown and set(shown) == {"0"}, shown
    assert b.js("+document.getElementById('match-count').dataset.count") == wrong
    _filter(b, "f-correct", "correct")
    assert set(_rows(b)) == {"1"}
    _filter(b, "f-correct", "any")
    _filter(b, "f-truncated", "yes")
    assert b.js(
        "Array.from(document.querySelectorAll('#rollouts tr.rollout')).every(r => r.dataset.truncated === '1')"
    )
    b.js(
        "document.getElementById('x-axis').value = 'stage'; document.getElementById('x-axis').dispatchEvent(new Event('change'))"
    )
    assert b.js("document.querySelectorAll('section#curves svg.chart line.boundary').length") == 0
    assert b.errors() == []


def test_run_report_in_chromium(browser, run_dir):
    html = write_report(run_dir)
    check_run_page(browser, html, "report_run.png")
    # the image rows show their thumbnail and caption; <think>/<answer> render as blocks
    _filter(browser, "f-truncated", "any")
    _filter(browser, "f-group", "2-image")
    assert browser.js("document.querySelectorAll('#rollouts img.thumb').length") > 0
    assert browser.js("document.querySelectorAll('#rollouts .caption').length") > 0
    assert browser.js("document.querySelectorAll('#rollouts .blk-answer').length") > 0
    assert browser.errors() == []


def test_eval_report_in_chromium(browser, eval_dir):
    from phaserl.eval.report import write_eval_report

    browser.open(write_eval_report(eval_dir, data_dir=FIX_EVAL))
    assert browser.js("document.querySelectorAll('#scores tbody tr').length") == 2
    assert browser.js("document.querySelectorAll('#breakdown .bar-row').length") > 10
    assert browser.js("document.querySelectorAll('#rollouts img.thumb').length") > 0
    print(f"screenshot: {browser.screenshot(ARTIFACTS / 'report_eval.png')}")
    _filter(browser, "f-correct", "incorrect")
    shown = _rows(browser)
    assert shown and set(shown) == {"0"}
    _filter(browser, "f-tag", "question_type: free_form")
    rows = browser.js("JSON.parse(document.getElementById('payload').textContent).samples.rows")
    want = sum(r["correct"] is False and "question_type: free_form" in r["tags"] for r in rows)
    assert want > 0 and browser.js("+document.getElementById('match-count').dataset.count") == want
    assert set(_rows(browser)) == {"0"}
    assert browser.errors() == []


def test_a_run_that_has_only_started_shows_what_it_has(browser, tmp_path):
    """Before step 1 there is at most an evaluation row (at_start); the page says so and shows it."""
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps(
            {"stage": "sums", "stage_index": 0, "step": 0, "global_step": 0, "eval/text/accuracy": 0.7}
        )
        + "\n"
    )
    browser.open(write_report(tmp_path))
    assert "No training step logged yet" in browser.js("document.getElementById('stages').textContent")
    assert browser.js("document.querySelectorAll('#eval svg.chart circle').length") == 1
    assert browser.js("document.getElementById('match-count').dataset.count") == "0"
    assert browser.errors() == []


def test_hostile_completion_stays_text(browser, tmp_path):
    """A completion holding `</script>` and markup renders as text: no extra script, no extra element."""
    from phaserl.logs import MetricsLog

    log = MetricsLog(tmp_path)
    log.log({"stage": "s", "stage_index": 0, "step": 1, "global_step": 1, "reward/mean": 1.0}, 1)
    evil = '</script><script>console.error("injected")</script><img src=x onerror="console.error(1)">'
    log.samples("1-s", 1, [{"id": "x", "prompt": "p", "completion": evil, "correct": True}])
    browser.open(write_report(tmp_path))
    assert browser.js("document.scripts.length") == 2  # the payload and the page's own script
    assert browser.js("document.querySelector('#rollouts .completion').textContent") == evil
    assert browser.js("document.querySelectorAll('#rollouts img').length") == 0
    assert browser.errors() == []


def test_tiny_two_stage_training_run_report_in_chromium(browser, tmp_path):
    """A real run: the smoke recipe's first two stages (text, then image+caption), 2 steps each."""
    rec = yaml.safe_load((ROOT / "recipes/smoke_tiny.yaml").read_text())
    rec["stages"] = rec["stages"][:2]
    recipe = tmp_path / "two_stage.yaml"
    recipe.write_text(yaml.safe_dump(rec))
    out = tmp_path / "run"
    sets = [
        "stages.*.steps=2",
        "rollout.max_new_tokens=6",
        "logging.progress=false",
        "logging.samples_per_step=8",
        "logging.tensorboard=true",
    ]
    cmd = [sys.executable, "-m", "phaserl", "train", str(recipe), "--output", str(out)]
    for s in sets:
        cmd += ["--set", s]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    res = subprocess.run(
        [sys.executable, "-m", "phaserl", "report", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert res.returncode == 0 and f"report: {out / 'report.html'}" in res.stdout, res.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("groups/zero_var_frac" in r and "response_length/p90" in r for r in rows)
    samples = [
        json.loads(x) for f in sorted((out / "samples").glob("*.jsonl")) for x in f.read_text().splitlines()
    ]
    assert {s["stage"] for s in samples} == {"1-text", "2-image-caption"} and len(samples) == 32
    assert any(s["view"] == "image+caption" and s["images"] and s["caption"] for s in samples)
    # a random-weight model gets everything wrong; make sure the filter has both kinds to separate
    check = [s for s in samples if s["correct"] is not None]
    if all(s["correct"] is False for s in check):
        browser.open(out / "report.html")
        assert browser.js("document.querySelectorAll('section#curves svg.chart').length") >= 6
        print(f"screenshot: {browser.screenshot(ARTIFACTS / 'report_tiny_run.png')}")
        _filter(browser, "f-correct", "incorrect")
        assert set(_rows(browser)) == {"0"}
        _filter(browser, "f-correct", "correct")
        assert _rows(browser) == []
        assert browser.errors() == []
    else:
        check_run_page(browser, out / "report.html", "report_tiny_run.png")
