"""Write docs/config.md, the recipe reference, from the field descriptions in phaserl/config.py.

    .venv/bin/python scripts/config_reference.py            # rewrite docs/config.md
    .venv/bin/python scripts/config_reference.py --check    # exit 1 when docs/config.md is out of date

One table per section (Recipe, then every nested model in the order it is first met), one row per field:
name, type, default, description. A field without a `description=` falls back to its trailing `# comment`
in the class source (RewardSpec, PromptTemplate). tests/test_docs.py runs --check's comparison.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "config.md"

HEADER = """# Recipe reference

Generated from the field descriptions in `phaserl/config.py` by `scripts/config_reference.py`; do not edit by
hand (`tests/test_docs.py` fails when this file and the code disagree). A recipe is YAML: the sections below,
then `stages:`. Any field can be overridden on the command line with `--set section.field=value` (for a stage:
`--set stages.0.steps=10`); a stage's `rollout`, `algo`, `critic`, `optim` and `eval` entries override the
recipe's for that stage only. A key that is not listed here is an error naming the stage and the key.
"""


def _type_name(tp) -> str:
    """A short, stable spelling of a field's annotation: `int | None`, `list[DatasetSpec]`, `'a' | 'b'`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_name(a) for a in args)}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _models_in(tp) -> list[type[BaseModel]]:
    """The pydantic models an annotation mentions (`list[DatasetSpec] | None` -> [DatasetSpec])."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    found: list[type[BaseModel]] = []
    for a in typing.get_args(tp):
        found += [m for m in _models_in(a) if m not in found]
    return found


def _comments(cls: type[BaseModel]) -> dict[str, str]:
    """field -> its trailing `# comment` in the class body, for fields declared without a description."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+):[^#\n]*#\s*(.+)$", src, re.M)}


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return f"see [{type(value).__name__}](#{type(value).__name__.lower()})"
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return "`" + ", ".join(repr(v.model_dump(exclude_defaults=True)) for v in value) + "`"
    elif field.default is PydanticUndefined:
        return "**required**"
    else:
        value = field.default
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def section(cls: type[BaseModel]) -> str:
    doc = inspect.cleandoc(cls.__doc__) if cls.__doc__ and cls.__doc__ is not BaseModel.__doc__ else ""
    comments = _comments(cls)
    lines = [f"## {cls.__name__}", ""]
    if doc:
        lines += [" ".join(doc.split()), ""]
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in cls.model_fields.items():
        desc = field.description or comments.get(name, "")
        lines.append(
            f"| `{name}` | {_type_name(field.annotation)} | {_cell(_default(field))} | {_cell(desc)} |"
        )
    return "\n".join(lines) + "\n"


def render() -> str:
    """The whole reference: Recipe first, then each nested model once, breadth first."""
    from phaserl.config import Recipe

    order: list[type[BaseModel]] = [Recipe]
    i = 0
    while i < len(order):
        for field in order[i].model_fields.values():
            order += [m for m in _models_in(field.annotation) if m not in order]
        i += 1
    return HEADER + "\n" + "\n".join(section(cls) for cls in order)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run .venv/bin/python scripts/config_reference.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
