"""The documentation stays true to the code: the generated recipe reference is current, the README is short
and its links resolve, and no docstring, comment or config description quotes a measured timing (figures go
stale; they belong in docs/performance.md and commit messages)."""

from __future__ import annotations

import ast
import importlib.util
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The check: a number followed by a unit of time, memory or work.
TIMING = re.compile(r"[0-9]+(\.[0-9]+)? ?(s|ms|GB|GFLOP)\b")


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "scripts" / "config_reference.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_config_reference_is_current():
    gen = _load_generator()
    text = gen.render()
    assert (ROOT / "docs" / "config.md").read_text() == text, (
        "docs/config.md is out of date: run .venv/bin/python scripts/config_reference.py"
    )


def test_config_reference_lists_every_field():
    from phaserl.config import AlgoConfig, Recipe, RolloutConfig

    text = _load_generator().render()
    for cls in (Recipe, RolloutConfig, AlgoConfig):
        assert f"## {cls.__name__}" in text
        for name, field in cls.model_fields.items():
            row = next((ln for ln in text.splitlines() if ln.startswith(f"| `{name}` |")), None)
            assert row is not None, f"{cls.__name__}.{name} missing"
            if field.description:
                assert field.description.replace("|", "\\|") in row


def test_readme_is_short_and_links_resolve():
    readme = (ROOT / "README.md").read_text()
    words = len(readme.split())
    assert words < 1200, f"README.md has {words} words (the bar is 1,200)"
    assert "docs/performance.md" in readme
    assert readme.lstrip().startswith("```bash\nmake demo")
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme):
        assert (ROOT / target).exists(), f"README links {target}, which does not exist"


def test_docs_links_resolve():
    for page in sorted((ROOT / "docs").glob("*.md")):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links {target}, which does not exist"


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every comment, docstring and `description=` string in a Python file."""
    src = path.read_text()
    out = [
        (tok.start[0], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(src).readline)
        if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                out.append((node.body[0].lineno, doc))
        elif isinstance(node, ast.keyword) and node.arg in ("description", "help"):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                out.append((node.value.lineno, node.value.value))
    return out


def test_prose_scanner_sees_comments_docstrings_and_descriptions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        '"""Module: took 3 s."""\nx = 1  # 12 ms a step\n\ndef g():\n    """Fine."""\n\n'
        'F = Field(1, description="about 4 GB")\ny = "not prose 5 s"\n'
    )
    hits = [text for _, text in _prose(f) if TIMING.search(text)]
    assert len(hits) == 3 and not any("not prose" in h for h in hits)


def test_no_measured_timings_in_docstrings_or_comments():
    hits = [
        f"{path.relative_to(ROOT)}:{line}: {text.strip()[:100]}"
        for path in sorted((ROOT / "phaserl").rglob("*.py"))
        for line, text in _prose(path)
        if TIMING.search(text)
    ]
    assert not hits, "measured figures belong in docs/performance.md:\n" + "\n".join(hits)


def _python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S)


def test_howto_reward_code_runs(tmp_path, monkeypatch):
    module, check = _python_blocks("howto_reward.md")
    (tmp_path / "my_rewards.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    exec(compile(check, "howto_reward.md", "exec"), {})
    from phaserl.config import recipe_from_dict

    recipe = recipe_from_dict(
        {
            "rewards": [{"name": "my_rewards:short_and_right"}],
            "stages": [{"name": "s", "steps": 1, "data": [{"generator": "arithmetic"}]}],
        }
    )
    assert recipe.rewards[0].name == "my_rewards:short_and_right"


def test_howto_dataset_code_runs(tmp_path, monkeypatch):
    adapter, check = _python_blocks("howto_dataset.md")
    (tmp_path / "my_adapter.py").write_text(adapter)
    sample = re.search(r"Sample row:\n\s+(\{.*?\})\n\"\"\"", adapter, re.S).group(1)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "quiz.jsonl").write_text(" ".join(sample.split()) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    exec(compile(check, "howto_dataset.md", "exec"), {})
