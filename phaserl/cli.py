"""`phaserl` command line: train | eval | score | verify | data ... | demo ... | report.

Each command imports its machinery lazily, so `phaserl --help` and light commands start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Rule-based RL for small vision-language models, staged as a curriculum.")
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
    set_: list[str] = typer.Option([], "--set", help="override: key.sub=value (lists: stages.0.x or stages.*.x)"),
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
    typer.echo(f"done: {len(finals)} stage(s); final weights in {finals[-1]}")
    from phaserl.report import summary

    typer.echo(summary(out))


@app.command()
def report(output: Path = typer.Argument(..., help="a training output folder"),
           png: Path = typer.Option(None, help="plot path (default OUTPUT/curves.png)")):
    """Summarise a run and plot its reward/accuracy curves per stage."""
    from phaserl.report import plot_curves, summary

    typer.echo(summary(output))
    typer.echo(f"plot: {plot_curves(output, png)}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


_ = json  # used by the wired commands below
