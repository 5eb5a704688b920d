import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from phaserl.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_dry_run_prints_the_plan_without_a_model():
    r = runner.invoke(
        app, ["train", str(ROOT / "recipes/smoke_tiny.yaml"), "--dry-run", "--set", "stages.0.steps=7"]
    )
    assert r.exit_code == 0, r.output
    assert "stage 1 'text'" in r.output and "steps=7" in r.output and "view=image+caption" in r.output
    assert "generated tokens" in r.output


def test_bad_recipe_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "recipes/smoke_tiny.yaml").read_text().replace("group_size:", "group_sise:"))
    r = runner.invoke(app, ["train", str(bad), "--dry-run"])
    assert r.exit_code == 2 and "group_sise" in r.output


def test_verify_command(tmp_path):
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(
        "\n".join(
            json.dumps(x)
            for x in [
                {"gold": "7", "pred": "3 + 4 = 7"},
                {"gold": "\\frac{1}{2}", "pred": "0.5"},
                {"gold": "B", "pred": "(C)", "answer_type": "choice"},
            ]
        )
        + "\n"
    )
    out = tmp_path / "o.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "phaserl", "verify", "--pairs", str(pairs), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("3 pairs, 2 equal, 0 undecided")
    assert [json.loads(x)["equal"] for x in out.read_text().splitlines()] == [True, True, False]


def test_bad_data_file_names_file_and_line(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "q1", "answer": "1"}\n{"question": "q2"\n')
    r = runner.invoke(
        app,
        [
            "train",
            str(ROOT / "recipes/smoke_tiny.yaml"),
            "--dry-run",
            "--set",
            f"stages.0.data=[{{path: {data}}}]",
        ],
    )
    assert f"{data}:2" in r.output


# ---- every flag a message or a doc names exists ------------------------------------------------------------

import ast  # noqa: E402
import re  # noqa: E402

import typer.main  # noqa: E402

FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?![\w-])")  # --llm-model; not --advantage_estimator
# Which command a module's messages and docstrings speak of (any one listed must have the flag).
MODULE_COMMANDS = {
    "phaserl/data/tools/caption.py": ["data caption"],
    "phaserl/data/tools/filter.py": ["data filter"],
    "phaserl/data/tools/decontaminate.py": ["data decontaminate"],
    "phaserl/data/tools/inspect.py": ["data inspect"],
    "phaserl/eval/runner.py": ["eval"],
    "phaserl/eval/score.py": ["score"],
    "phaserl/rewards/cli.py": ["verify"],
    "phaserl/minivlm/build.py": ["demo build-mini-vlm"],
    "phaserl/eval/registry.py": ["eval", "score"],
    "phaserl/eval/loaders/": ["eval", "score"],
    "phaserl/openai_api.py": ["data caption", "score", "eval"],
    "phaserl/curriculum.py": ["train"],
    "phaserl/config.py": ["train"],
    "phaserl/distributed.py": ["train"],
    "phaserl/report": ["report"],
}
# Modules whose flags belong to other programs: `vllm serve`'s argv, the verifier worker's own argv, pip.
FOREIGN = (
    "phaserl/rollout/vllm_server.py",
    "phaserl/rewards/_worker.py",
    "phaserl/rewards/pool.py",
    "phaserl/models.py",
)


def _cli_flags() -> dict[str, set[str]]:
    """{"data caption": {"--model", ...}, ...}: the options each command really accepts."""
    flags: dict[str, set[str]] = {}

    def walk(cmd, path):
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())
        if not hasattr(cmd, "commands"):
            flags[path] = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
            flags[path].add("--help")

    walk(typer.main.get_command(app), "")
    return flags


def _commands_for(module: str, flags: dict[str, set[str]]) -> list[str] | None:
    for prefix, cmds in MODULE_COMMANDS.items():
        if module.startswith(prefix):
            return cmds
    return None if module.startswith(FOREIGN) else list(flags)


def test_every_flag_named_in_messages_and_docstrings_exists():
    flags = _cli_flags()
    bad = []
    for path in sorted((ROOT / "phaserl").rglob("*.py")):
        module = str(path.relative_to(ROOT))
        cmds = _commands_for(module, flags)
        if cmds is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            text = node.value
            named = re.search(r"phaserl ((?:data|demo) [a-z-]+|[a-z]+)", text)  # a string about one command
            where = [named.group(1)] if named and named.group(1) in flags else cmds
            for flag in FLAG.findall(text):
                if not any(flag in flags[c] for c in where):
                    bad.append(f"{module}:{node.lineno}: {flag} (not an option of {' / '.join(where)})")
    assert not bad, "\n".join(bad)


def test_every_flag_in_the_docs_exists():
    flags = _cli_flags()
    command = re.compile(r"phaserl ((?:data|demo) [a-z-]+|train|eval|score|verify|report)\b")
    bad = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text().replace("\\\n", " ")  # shell continuation lines join their command
        for line_no, line in enumerate(text.splitlines(), start=1):
            for m in command.finditer(line):
                rest = re.split(r"[|#`]|\s-m\s|\s&&\s", line[m.end() :])[0]  # this command's own words
                for flag in FLAG.findall(rest):
                    if flag not in flags[m.group(1)]:
                        bad.append(f"{path.name}:{line_no}: phaserl {m.group(1)} {flag}")
    assert not bad, "\n".join(bad)


def test_score_and_eval_have_the_flags_their_docs_promise():
    flags = _cli_flags()
    assert {"--hub", "--llm-base-url", "--llm-model", "--llm-api-key-env", "--llm-cache"} <= flags["score"]
    assert {"--hub", "--view", "--top-p", "--seed", "--scorer", "--llm-api-key-env"} <= flags["eval"]
    assert {"--backend", "--base-url", "--api-key-env", "--concurrency", "--image-path-map"} <= flags[
        "data caption"
    ]
