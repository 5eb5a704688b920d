"""How fast is the answer verifier, and what do pathological answers cost?

Prints: worker start-up time; checks per second on typical answers in-process (unbounded reference),
through one worker (check() one at a time) and through the pool (check_many); cache hits per second;
then, for each pathological input, the wall time of its check and its verdict.

    .venv/bin/python benchmarks/verifier_speed.py [--workers 2] [--timeout 5] [--skip-pathological]
"""

from __future__ import annotations

import argparse
import time

from phaserl.rewards.compare import decide, quiet_math_verify
from phaserl.rewards.verify import Verifier

MATH = [  # (gold, pred): symbolic answers a math RL run sees
    (r"\frac{1}{2}", "0.5"),
    (r"\frac{14}{3}", r"\frac{28}{6}"),
    (r"3\sqrt{13}", r"\sqrt{117}"),
    (r"2\sqrt{2}", r"\sqrt{8}"),
    ("x^2 + 2x + 1", "(x+1)^2"),
    ("(1, 2]", "(1,2]"),
    (r"\{1, 2\}", r"\{2,1\}"),
    (r"\frac{\pi}{2}", r"\pi/2"),
    ("x = 3", "3"),
    (r"[-1, 0) \cup (0, 1]", r"[-1,0)\cup(0,1]"),
    (r"\begin{pmatrix}1 & 0 \\ 0 & 1\end{pmatrix}", r"\begin{pmatrix}1&0\\0&1\end{pmatrix}"),
    (r"1 \pm \sqrt{19}", r"1+\sqrt{19}, 1-\sqrt{19}"),
    (r"90^\circ", "90"),
    ("28\\%", "0.28"),
    (r"\frac{9}{4}\pi", r"\frac94\pi"),
    ("2", r"\frac{1+\sqrt{5}}{2}"),
    ("y = 2x + 1", "y = 1 + 2x"),
]
PATHOLOGICAL = [
    ("tower 2^2^2^30", "1", "2^{2^{2^{30}}}"),
    ("tower 10^10^10^10", "5", "10^{10^{10^{10}}}"),
    ("factorial (10^100000)!", "1", "(10^{100000})!"),
    ("x^x^...^x (100)", "x", "x" + "^x" * 100),
    ("10,000 nested braces", "1", "{" * 10_000 + "1" + "}" * 10_000),
    ("1 MB of 1+1+...", "3", "1+" * 500_000 + "1"),
    ("code-like text", "1", "__import__('os').system('echo no')"),
    ("unicode confusable", "B", "В"),
]


def sum_items() -> list[dict]:
    """The demo task: 300 distinct (gold, pred) pairs of one-digit sums in three dressings."""
    items = []
    for a in range(10):
        for b in range(10):
            for pred in (f"{a + b}", f"{a} + {b} = {a + b}", f"The answer is {a + b}."):
                items.append({"gold": str(a + b), "pred": pred})
    return items


def symbolic_items() -> list[dict]:
    return [{"gold": g, "pred": p} for g, p in MATH]


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.1f} checks/s  ({n} in {seconds:.2f} s)"


def bench_in_process(sets: dict[str, list[dict]]) -> None:
    quiet_math_verify()
    decide("$x^2$", "x \\cdot x")
    for name, items in sets.items():
        t0 = time.perf_counter()
        for it in items:
            decide(it["gold"], it["pred"])
        print(f"in-process, no bound, {name:9s} {rate(len(items), time.perf_counter() - t0)}")


def bench_pool(sets: dict[str, list[dict]], workers: int, timeout: float) -> None:
    with Verifier(workers=1, timeout=timeout, cache_size=0) as one:
        print(f"start-up, 1 worker                {one.wait_ready():.2f} s")
        for name, items in sets.items():
            t0 = time.perf_counter()
            for it in items:
                one.check(it["gold"], it["pred"])
            print(f"1 worker, check(),    {name:9s} {rate(len(items), time.perf_counter() - t0)}")
    with Verifier(workers=workers, timeout=timeout) as pool:
        print(f"start-up, {workers} workers               {pool.wait_ready():.2f} s")
        for name, items in sets.items():
            t0 = time.perf_counter()
            pool.check_many(items)
            print(f"{workers} workers, check_many, {name:6s} {rate(len(items), time.perf_counter() - t0)}")
        everything = [it for items in sets.values() for it in items]
        t0 = time.perf_counter()
        pool.check_many(everything)
        print(f"cache hits, all pairs again       {rate(len(everything), time.perf_counter() - t0)}")


def bench_pathological(workers: int, timeout: float) -> None:
    with Verifier(workers=workers, timeout=timeout, max_chars=2_000_000) as pool:
        pool.wait_ready()
        print(f"\npathological inputs (timeout {timeout} s; a killed worker is replaced in the background)")
        for name, gold, pred in PATHOLOGICAL:
            pool.wait_ready()
            t0 = time.perf_counter()
            verdict = pool.check(gold, pred)
            wall = time.perf_counter() - t0
            restart = pool.wait_ready()
            print(
                f"  {name:26s} {wall:6.2f} s  verdict {verdict!s:5s}  then {restart:.2f} s to restore the pool"
            )
        print(f"  pool stats: {dict(pool.stats)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--skip-pathological", action="store_true")
    args = parser.parse_args()
    sets = {"sums": sum_items(), "symbolic": symbolic_items()}
    print(f"typical answers: {len(sets['sums'])} one-digit sums, {len(sets['symbolic'])} symbolic pairs")
    bench_in_process(sets)
    bench_pool(sets, args.workers, args.timeout)
    if not args.skip_pathological:
        bench_pathological(args.workers, args.timeout)


if __name__ == "__main__":
    main()
