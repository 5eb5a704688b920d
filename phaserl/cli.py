"""`phaserl` command line: train | eval | score | verify | data ... | demo ... | report.

Each command imports its machinery lazily, so `phaserl --help` and light commands start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Rule-based RL for small vision-language models, staged as a curriculum.",
)
data_app = typer.Typer(no_args_is_help=True, help="Data tools: inspect, caption, filter, decontaminate.")
demo_app = typer.Typer(no_args_is_help=True, help="Demos: build the CPU-sized mini VLM.")
app.add_typer(data_app, name="data")
app.add_typer(demo_app, name="demo")


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(code)


@app.command()
def train(
    recipe: Path = typer.Argument(..., help="recipe YAML (see recipes/)"),
    set_: list[str] = typer.Option(
        [], "--set", help="override: key.sub=value (lists: stages.0.x or stages.*.x)"
    ),
    output: Path = typer.Option(None, "--output", "-o", help="output folder (default: runs/<recipe name>)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved plan; load no model"),
    fresh: bool = typer.Option(False, "--fresh", help="delete OUTPUT first instead of resuming"),
):
    """Run every stage of RECIPE; rerun the same command to resume after a crash or a signal."""
    from phaserl.config import ConfigError, load_recipe
    from phaserl.data.schema import DataError
    from phaserl.trainer import Interrupted

    try:
        rec = load_recipe(recipe, set_)
    except ConfigError as e:
        _fail(str(e))
    out = output or Path("runs") / rec.name
    try:
        if dry_run:
            from phaserl.curriculum import plan

            typer.echo(plan(rec, out))
            return
        from phaserl.curriculum import run_curriculum

        finals = run_curriculum(rec, out, fresh=fresh)
    except (ConfigError, DataError) as e:
        _fail(str(e))
    except Interrupted as e:
        typer.echo(f"{e}\nrerun the same command to resume.")
        raise typer.Exit(130) from None
    import os

    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"done: {len(finals)} stage(s); final weights in {finals[-1]}")
        from phaserl.report import summary

        typer.echo(summary(out))


@app.command()
def report(
    output: Path = typer.Argument(..., help="a training output folder (or a `phaserl eval` folder)"),
    html: Path = typer.Option(None, help="page path (default OUTPUT/report.html)"),
    png: Path = typer.Option(None, help="the reward/accuracy curves as a PNG (default OUTPUT/curves.png)"),
    watch: float = typer.Option(None, help="rewrite the page every SECONDS until Ctrl-C (it reloads itself)"),
    data_dir: Path = typer.Option(None, help="benchmarks folder (an eval folder's gold answers, categories)"),
):
    """Summarise a run; write OUTPUT/report.html: curves per stage, evaluation, a rollout browser."""
    from phaserl.logs import read_metrics
    from phaserl.report import plot_curves, summary, watch_report, write_report

    if not output.is_dir():
        _fail(f"{output}: no such folder")
    if (output / "summary.json").exists() and not (output / "metrics.jsonl").exists():
        from phaserl.eval.report import write_eval_report

        typer.echo(f"report: {write_eval_report(output, html=html, data_dir=data_dir)}")
        return
    typer.echo(summary(output))
    if read_metrics(output):
        typer.echo(f"plot: {plot_curves(output, png)}")
    if watch:
        watch_report(output, watch, echo=typer.echo, html=html)
    typer.echo(f"report: {write_report(output, html)}")


@app.command()
def verify(
    pairs: Path = typer.Option(
        ..., "--pairs", help="JSONL rows with gold, pred (+ answer_type, choices, tolerance)"
    ),
    out: Path = typer.Option(None, "--out", help="output JSONL (default: stdout)"),
    workers: int = typer.Option(2, help="verifier worker processes"),
    timeout: float = typer.Option(5.0, help="hard wall-clock bound per check, seconds"),
):
    """Check (gold, pred) pairs with the rewards' verifier; last line: `N pairs, E equal, U undecided, S s`."""
    from phaserl.rewards.cli import verify_command

    raise typer.Exit(verify_command(pairs, out, workers=workers, timeout=timeout))


def _user_errors():
    from phaserl.data.schema import DataError

    return (DataError, FileNotFoundError, ValueError)


@app.command()
def score(
    benchmark: str = typer.Argument(
        ..., help="e.g. mathvision:test, mathvista:testmini, olympiadbench, math500"
    ),
    predictions: Path = typer.Argument(..., help="JSONL rows with id + response (or id + extraction)"),
    data_dir: Path = typer.Option(
        None, help="benchmarks folder (default $PHASERL_DATA or ../shared/data/benchmarks)"
    ),
    hub: bool = typer.Option(False, "--hub", help="read the benchmark from the Hugging Face hub"),
    out: Path = typer.Option(None, help="result JSON"),
    scorer: str = typer.Option(None, help="override the benchmark's default scorer"),
    llm_base_url: str = typer.Option(None, help="OpenAI-compatible endpoint for LLM answer extraction (off)"),
    llm_model: str = typer.Option(None, help="model name at that endpoint"),
    llm_api_key_env: str = typer.Option(None, help="environment variable holding that endpoint's API key"),
    llm_cache: Path = typer.Option(
        None, help="JSONL cache of LLM replies (default $PHASERL_CACHE/llm_cache.jsonl)"
    ),
    llm_concurrency: int = typer.Option(8, help="LLM requests in flight at once"),
):
    """Score existing responses with the benchmark's official-compatible scorer."""
    from phaserl.eval.score import score_command
    from phaserl.openai_api import APIError, api_key_from_env

    try:
        score_command(
            benchmark,
            predictions,
            data_dir,
            out,
            scorer=scorer,
            llm_base_url=llm_base_url,
            llm_model=llm_model,
            llm_api_key=api_key_from_env(llm_api_key_env),
            llm_cache=llm_cache,
            llm_concurrency=llm_concurrency,
            hub=hub,
            echo=typer.echo,
        )
    except (*_user_errors(), APIError) as e:
        _fail(str(e))


@app.command("eval")
def eval_(
    model: str = typer.Option(
        ..., help="model folder (e.g. OUT/stages/3-.../final), hub id or builtin:/tiny:"
    ),
    benchmarks: str = typer.Option(..., help="comma-separated, e.g. mathvision:testmini,math500"),
    output: Path = typer.Option(Path("runs/eval"), "--output", "-o", help="results folder (rerun resumes)"),
    limit: int = typer.Option(None, help="first N items of each benchmark"),
    samples: int = typer.Option(1, help="K samples per item (pass@k and mean@k when K > 1)"),
    engine: str = typer.Option("auto", help="auto (cpu on a CPU, else hf), hf, cpu or vllm"),
    data_dir: Path = typer.Option(None, help="benchmarks folder"),
    hub: bool = typer.Option(False, "--hub", help="read the benchmarks from the Hugging Face hub"),
    image_dir: Path = typer.Option(
        None, help="images for benchmarks whose images are not in the data folder"
    ),
    missing_images: str = typer.Option("error", help="error | skip | text (evaluate text-only when asked)"),
    view: str = typer.Option(
        None, help="image | text | image+caption (default: image when the item has one)"
    ),
    template: str = typer.Option("boxed", help="prompt template"),
    max_new_tokens: int = typer.Option(1024),
    temperature: float = typer.Option(None, help="default: greedy for K=1, 1.0 for K>1"),
    top_p: float = typer.Option(1.0),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0),
    dtype: str = typer.Option("float32"),
    scorer: str = typer.Option(None, help="override each benchmark's default scorer"),
    llm_base_url: str = typer.Option(None, help="OpenAI-compatible endpoint for LLM answer extraction (off)"),
    llm_model: str = typer.Option(None, help="model name at that endpoint"),
    llm_api_key_env: str = typer.Option(None, help="environment variable holding that endpoint's API key"),
):
    """Generate, score and tabulate; writes records, a markdown table, per-category plots and report.html."""
    from phaserl.eval.runner import eval_command
    from phaserl.openai_api import APIError, api_key_from_env

    try:
        eval_command(
            model,
            benchmarks,
            output,
            limit=limit,
            samples=samples,
            engine=engine,
            data_dir=data_dir,
            image_dir=image_dir,
            missing_images=missing_images,
            hub=hub,
            view=view,
            template=template,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            batch_size=batch_size,
            seed=seed,
            dtype=dtype,
            scorer=scorer,
            llm_base_url=llm_base_url,
            llm_model=llm_model,
            llm_api_key=api_key_from_env(llm_api_key_env),
            echo=typer.echo,
        )
    except (*_user_errors(), APIError) as e:
        _fail(str(e))
    from phaserl.eval.report import write_eval_report

    typer.echo(f"report: {write_eval_report(output, data_dir=data_dir, image_dir=image_dir, hub=hub)}")


def _fields(field: list[str], flag: str = "--field") -> dict[str, str]:
    try:
        return dict(f.split("=", 1) for f in field)
    except ValueError:
        _fail(f"{flag} takes name=value pairs, got {field}")


@data_app.command("inspect")
def data_inspect(
    path: str = typer.Argument(..., help="JSONL/JSON/parquet file or folder"),
    adapter: str = typer.Option("generic"),
    field: list[str] = typer.Option([], help="field mapping, e.g. question=problem (repeatable)"),
    image_root: str = typer.Option(None),
    show: int = typer.Option(3, help="rendered prompts shown per view"),
    template: str = typer.Option("plain"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Counts by source and answer type, images present/missing, caption coverage, prompts in each view."""
    from phaserl.data.tools.inspect import format_report, inspect_command

    try:
        report_ = inspect_command(path, adapter, _fields(field), image_root, n_show=show, template=template)
    except _user_errors() as e:
        _fail(str(e))
    typer.echo(json.dumps(report_, indent=1, default=str) if as_json else format_report(report_))


@data_app.command("caption")
def data_caption(
    model: str = typer.Option(
        ..., help="VLM: a folder, hub id or builtin:/tiny: name; for openai, the served name"
    ),
    input: str = typer.Option(...),
    output: str = typer.Option(..., help="JSONL journal: a rerun resumes"),
    backend: str = typer.Option(
        "hf", help="hf | vllm | openai (an OpenAI-compatible /v1/chat/completions server)"
    ),
    base_url: str = typer.Option(None, help="openai: the server's root, e.g. http://127.0.0.1:8000/v1"),
    api_key_env: str = typer.Option(None, help="openai: environment variable holding the API key"),
    concurrency: int = typer.Option(8, help="openai: requests in flight at once"),
    timeout: float = typer.Option(120.0, help="openai: seconds per request"),
    retries: int = typer.Option(4, help="openai: retries of a request on 429/5xx/timeouts, with backoff"),
    adapter: str = typer.Option("generic"),
    field: list[str] = typer.Option([]),
    image_root: str = typer.Option(None),
    image_path_map: list[str] = typer.Option([], help="OLD_PREFIX=NEW_PREFIX for image paths (repeatable)"),
    prompt: str = typer.Option("dense", help="dense | brief | any text (may use {question})"),
    batch_size: int = typer.Option(8),
    max_new_tokens: int = typer.Option(256),
    overwrite: bool = typer.Option(False),
    dtype: str = typer.Option("float32"),
    skip_bad_rows: bool = typer.Option(False),
    temperature: float = typer.Option(0.0),
    seed: int = typer.Option(0),
):
    """A caption per image with any VLM (resumable), into the `caption` field used by view image+caption."""
    from phaserl.data.tools.caption import caption_command
    from phaserl.openai_api import api_key_from_env

    try:
        res = caption_command(
            model,
            input,
            output,
            prompt_template=prompt,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            backend=backend,
            adapter=adapter,
            fields=_fields(field),
            image_root=image_root,
            image_path_map=_fields(image_path_map, "--image-path-map"),
            overwrite=overwrite,
            dtype=dtype,
            skip_bad_rows=skip_bad_rows,
            temperature=temperature,
            seed=seed,
            base_url=base_url,
            api_key=api_key_from_env(api_key_env),
            concurrency=concurrency,
            timeout=timeout,
            retries=retries,
        )
    except _user_errors() as e:
        _fail(str(e))
    typer.echo(json.dumps(res, indent=1, default=str))
    if res.get("request_errors"):
        _fail(
            f"{res['request_errors']} image(s) not captioned after retries (server errors above); "
            "rerun the same command to ask for them again",
            code=1,
        )


@data_app.command("filter")
def data_filter(
    model: str = typer.Option(...),
    input: str = typer.Option(...),
    output: str = typer.Option(...),
    samples: int = typer.Option(8),
    keep: str = typer.Option("0.1-0.9", help="pass-rate range kept"),
    adapter: str = typer.Option("generic"),
    field: list[str] = typer.Option([]),
    image_root: str = typer.Option(None),
    view: str = typer.Option("auto"),
    template: str = typer.Option("plain"),
    max_new_tokens: int = typer.Option(256),
    temperature: float = typer.Option(1.0),
    top_p: float = typer.Option(1.0),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0),
    scores: str = typer.Option(None),
    dtype: str = typer.Option("float32"),
    skip_bad_rows: bool = typer.Option(False),
):
    """Sample K answers per problem, keep problems whose pass rate is in range (drops unparseable golds)."""
    from phaserl.data.tools._io import parse_range
    from phaserl.data.tools.filter import filter_command

    try:
        res = filter_command(
            model,
            input,
            output,
            samples=samples,
            keep=parse_range(keep),
            adapter=adapter,
            fields=_fields(field),
            image_root=image_root,
            view=view,
            template=template,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            batch_size=batch_size,
            seed=seed,
            scores=scores,
            dtype=dtype,
            skip_bad_rows=skip_bad_rows,
        )
    except _user_errors() as e:
        _fail(str(e))
    typer.echo(json.dumps(res, indent=1, default=str))


@data_app.command("decontaminate")
def data_decontaminate(
    input: str = typer.Option(...),
    against: str = typer.Option(..., help="names or files, comma-separated"),
    output: str = typer.Option(...),
    report: str = typer.Option(None),
    ngram: int = typer.Option(13),
    threshold: float = typer.Option(0.5),
    image_hash_distance: int = typer.Option(4),
    adapter: str = typer.Option("generic"),
    field: list[str] = typer.Option([]),
    image_root: str = typer.Option(None),
    benchmarks_dir: str = typer.Option(None),
    benchmark_images: list[str] = typer.Option([]),
    skip_bad_rows: bool = typer.Option(False),
):
    """Drop training items overlapping benchmarks (text n-grams, perceptual image hashes), with a report."""
    from phaserl.data.tools.decontaminate import decontaminate_command

    try:
        res = decontaminate_command(
            input,
            against,
            output,
            report=report,
            ngram=ngram,
            threshold=threshold,
            image_hash_distance=image_hash_distance,
            adapter=adapter,
            fields=_fields(field),
            image_root=image_root,
            benchmarks_dir=benchmarks_dir,
            benchmark_images=_fields(benchmark_images),
            skip_bad_rows=skip_bad_rows,
        )
    except _user_errors() as e:
        _fail(str(e))
    typer.echo(json.dumps(res, indent=1, default=str))


@demo_app.command("build-mini-vlm")
def build_mini_vlm(
    output: Path = typer.Option(..., "--output", "-o"),
    steps: int = typer.Option(500),
    image_size: int = typer.Option(192),
    patch_size: int = typer.Option(16),
    vision_layers: int = typer.Option(2),
    vision_hidden: int = typer.Option(128),
    batch_size: int = typer.Option(16),
    lr: float = typer.Option(3e-3),
    seed: int = typer.Option(0),
    lm: str = typer.Option("builtin:smollm2-135m-instruct"),
    max_minutes: float = typer.Option(12.0, help="wall-clock cap on alignment (0: no cap)"),
):
    """Build the CPU-sized LLaVA (SigLIP tower + SmolLM2) and align its vision side on glyph images."""
    from phaserl.minivlm.build import build_mini_vlm as build

    build(
        output=output,
        steps=steps,
        image_size=image_size,
        patch_size=patch_size,
        vision_layers=vision_layers,
        vision_hidden=vision_hidden,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        lm=lm,
        max_minutes=max_minutes or None,
        log=typer.echo,
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
