"""The verifier pool: answers, cache, hard time bound, memory bound, adversarial inputs, health after."""

import gc
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from phaserl.rewards.verify import Verifier

TIMEOUT = 1.5
SLACK = 1.0  # kill + reply + a loaded 2-core machine


@pytest.fixture(scope="module")
def verifier():
    v = Verifier(workers=2, timeout=TIMEOUT)
    v.wait_ready()
    yield v
    v.close()


def _healthy(v: Verifier) -> None:
    v.wait_ready()
    assert v.alive_workers() == 2
    assert v.check("7", "3 + 4 = 7") is True
    assert v.check("7", "8") is False


def test_check_answers(verifier):
    assert verifier.check("7", "3 + 4 = 7") is True
    assert verifier.check(r"\frac{1}{2}", "0.5") is True
    assert verifier.check("x^2", r"x \cdot x") is True
    assert verifier.check("B", "12", choices=["10", "12"]) is True
    assert verifier.check("3.14", "3.1416", tolerance=0.01) is True
    assert verifier.check("3.14", "3.1416") is False
    assert verifier.check("100", "101", rel_tolerance=0.02, answer_type="number") is True
    assert verifier.check("$$", "1") is None  # unparseable gold
    with pytest.raises(ValueError):
        verifier.check("1", "1", answer_type="essay")


def test_check_many_in_parallel_keeps_order_and_dedups(verifier):
    items = [
        {"gold": str(a + b), "pred": f"{a} + {b} = {a + b + (i % 2)}", "id": i}  # extra keys ignored
        for i, (a, b) in enumerate((a, b) for a in range(5) for b in range(4))
    ]
    items += items[:5]
    sent = verifier.stats["sent"]
    got = verifier.check_many(items)
    assert got == [it["pred"].endswith(it["gold"]) for it in items]
    assert verifier.stats["sent"] == sent + 20  # the 5 duplicates were not sent again


def test_cache_answers_repeats_without_a_worker(verifier):
    verifier.check("12", "12 apples")
    hits = verifier.stats["cache_hits"]
    assert verifier.check("12", "12 apples") is True
    assert verifier.stats["cache_hits"] == hits + 1
    assert verifier.last_seconds == [0.0]


ADVERSARIAL = [
    # huge exponents and other endless computations (each costs one kill and one worker restart)
    ("1", "2^{2^{2^{30}}}"),
    ("5", "10^{10^{10^{10}}}"),
    ("1", "(10^{100000})!"),
    ("x", "x" + "^x" * 100),
    # deep nesting
    ("1", "{" * 10_000 + "1" + "}" * 10_000),
    ("1", r"\frac{" * 10_000),
    ("1", "(" * 10_000 + "1" + ")" * 10_000),
    # very long strings: 1 MB goes to a worker and is bounded; 2 MB is over max_chars, undecidable unsent
    ("3", "1+" * 500_000 + "1"),
    ("9" * 2_000_000, "9" * 2_000_000),
    # code-like text is data, never run
    ("1", "__import__('os').system('touch PWNED_SENTINEL')"),
    ("1", 'exec(\'open("PWNED_SENTINEL", "w")\')'),
    ("0", "().__class__.__base__.__subclasses__()"),
    ("1", "lambda: 1"),
    ("1", "eval('2**2**40')"),
    ("1", r"\input{/etc/passwd}"),
    ("2", "${2}$" * 2000),
]
CODE_LIKE = slice(9, 15)
CONFUSABLES = [  # (gold, pred, choices, expected)
    ("B", "В", ["1", "2"], False),  # Cyrillic Ve
    ("A", "Α", ["1", "2"], False),  # Greek Alpha
    ("7", "７", None, True),  # full width: the same digit to a reader
    ("-1", "−1", None, True),  # U+2212 minus sign
    ("7", "7\u200b", None, True),  # a zero-width space
]


def test_adversarial_inputs_stay_within_the_bound(verifier, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(verifier, "max_chars", 1_100_000)
    timeouts = verifier.stats["timeouts"]
    items = [{"gold": g, "pred": p} for g, p in ADVERSARIAL]
    items += [{"gold": g, "pred": p, "choices": c} for g, p, c, _ in CONFUSABLES]
    got = verifier.check_many(items)
    slowest = max(verifier.last_seconds)
    assert slowest < TIMEOUT + SLACK, f"a check took {slowest:.2f} s"
    assert verifier.stats["timeouts"] >= timeouts + 4
    assert all(r in (True, False, None) for r in got)
    assert True not in got[CODE_LIKE]
    assert not list(tmp_path.iterdir()), "code-like text must never run"
    assert got[len(ADVERSARIAL) :] == [want for *_, want in CONFUSABLES]
    assert got[:4] == [None] * 4  # endless: killed at the bound, undecidable
    assert got[7] in (False, None)  # 1 MB of 1+1+...: bounded either way
    assert got[8] is None  # too long: undecidable
    _healthy(verifier)


def test_a_worker_killed_while_idle_is_replaced_and_nothing_is_lost(verifier):
    verifier.wait_ready()
    crashes = verifier.stats["crashes"]
    os.kill(verifier._pool._workers[0].proc.pid, signal.SIGKILL)
    time.sleep(0.2)
    items = [{"gold": str(n), "pred": f"x = {n}"} for n in range(100, 110)]
    assert verifier.check_many(items) == [True] * 10
    assert verifier.stats["crashes"] == crashes + 1


def test_concurrent_callers_get_their_own_answers(verifier):
    results = {}

    def work(k):
        results[k] = verifier.check_many(
            [{"gold": str(k * 10 + i), "pred": str(k * 10 + i)} for i in range(8)]
        )

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: [True] * 8 for k in range(3)}


def test_memory_limit_stops_a_runaway_allocation():
    code = (
        "from phaserl.rewards._worker import _limit_memory\n"
        "_limit_memory(300)\n"
        "x = bytearray(600 * 1024 * 1024)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "MemoryError" in proc.stderr


def test_a_memory_bound_below_the_worker_footprint_fails_loudly():
    with pytest.raises(RuntimeError, match="max_memory_mb"):
        Verifier(workers=1, max_memory_mb=40).check("1", "1")


def test_closed_verifier_refuses_work():
    v = Verifier(workers=1, timeout=1.0, max_memory_mb=1024)
    v.close()
    with pytest.raises(RuntimeError, match="closed"):
        v.check("1", "1")


def test_a_forgotten_verifier_stops_its_workers():
    v = Verifier(workers=1, timeout=1.0)
    proc = v._pool._workers[0].proc
    del v
    gc.collect()
    assert proc.poll() is not None  # killed and reaped, not left running
