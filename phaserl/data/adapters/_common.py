"""Small helpers every adapter shares: field look-up, image-reference lists, placeholders, ids.

Adapters raise `DataError(msg, field=...)` without a path; `sources.load_examples` adds the file and line.
"""

from __future__ import annotations

import re
from typing import Any

from phaserl.data.schema import DataError

_MISSING = object()
# `<image>`, `<image1>`, `<image 2>`: placeholders some datasets put in the text; the renderer places the
# images itself (before the text, as Qwen2.5-VL expects), so the tags would only be noise.
_IMAGE_TAG = re.compile(r"<image\s*\d*>", re.IGNORECASE)


def get_field(row: dict, key: str, default: Any = _MISSING) -> Any:
    """row[key], where key may be dotted ("reward_model.ground_truth") to reach into nested dicts."""
    if key in row:
        return row[key]
    node: Any = row
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is _MISSING:
                raise KeyError(key)
            return default
        node = node[part]
    return node


def first_field(row: dict, keys: tuple[str, ...] | list[str]) -> tuple[str | None, Any]:
    """The first of `keys` present in row with a value that is not None/empty: (key, value)."""
    for key in keys:
        value = get_field(row, key, None)
        if value is not None and value != "" and value != []:
            return key, value
    return None, None


def require_text(row: dict, keys: tuple[str, ...] | list[str], field: str) -> str:
    """A non-empty text field; numbers (JSON answers such as 27.0) become their string form."""
    key, value = first_field(row, keys)
    if key is None:
        raise DataError(f"missing {field} (looked for {', '.join(repr(k) for k in keys)})", field=keys[0])
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"{field} must be text or a number, got {type(value).__name__}", field=key)
    text = number_text(value) if not isinstance(value, str) else value
    if not text.strip():
        raise DataError(f"empty {field}", field=key)
    return text


def number_text(value: int | float) -> str:
    """27.0 -> "27", 0.5 -> "0.5": JSON loaders turn integer answers into floats."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def image_list(value: Any) -> list[Any]:
    """Normalise an image field to a list of references (paths, bytes, dicts, PIL images)."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [v for v in value if v is not None and v != ""]
    return [value]


def strip_image_tags(text: str) -> str:
    """Remove `<image>`-style placeholders and the blank space they leave."""
    return _IMAGE_TAG.sub("", text).strip()


def unbox(answer: str) -> str:
    r"""`\boxed{17^\circ}` -> `17^\circ` when the whole answer is one box (ViRL39K stores answers boxed)."""
    s = answer.strip()
    for prefix in ("\\boxed{", "\\fbox{"):
        if s.startswith(prefix) and s.endswith("}") and _balanced(s[len(prefix) : -1]):
            return s[len(prefix) : -1].strip()
    return s


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0


def plain_meta(row: dict, exclude: set[str] | tuple[str, ...]) -> dict[str, Any]:
    """Row fields not used elsewhere, kept only when JSON-plain (no bytes or images), for logs and tools."""
    return {k: v for k, v in row.items() if k not in exclude and _is_plain(v)}


def _is_plain(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if depth > 3:
        return False
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def row_id(row: dict, keys: tuple[str, ...], spec, idx: int) -> str:
    """The row's own id when it has one (so tool outputs can be joined back), else `<dataset>-<index>`."""
    _, value = first_field(row, keys)
    if value is None or isinstance(value, (dict, list)):
        return f"{spec.name}-{idx}"
    return number_text(value) if isinstance(value, float) else str(value)


def choice_list(value: Any, field: str) -> list[str] | None:
    """Options as a list of strings; None/[] -> None. MathVista stores the string 'None' for no choices."""
    if value is None or value == [] or value == "None" or value == "":
        return None
    if not isinstance(value, (list, tuple)):
        raise DataError(f"choices must be a list, got {type(value).__name__}", field=field)
    return [number_text(v) if isinstance(v, float) else str(v) for v in value]


# An option list inside the question text: a line starting "A." / "(A)" / "A:" / "A)".
_OPTION_LINE = re.compile(r"(^|\n)\s*(\(A\)|A[.:)])\s*\S")


def looks_like_choice(question: str, answer: str) -> bool:
    """True when the gold is a bare letter and the question lists lettered options (MathV360K, ViRL39K)."""
    return bool(re.fullmatch(r"\(?[A-H]\)?", answer.strip())) and bool(_OPTION_LINE.search(question))


def unwrap_dollars(answer: str) -> str:
    """`$\\frac{1}{2}$` -> `\\frac{1}{2}` (LMM-R1 stores golds as inline math)."""
    s = answer.strip()
    for fence in ("$$", "$"):
        inner = s[len(fence) : -len(fence)] if len(s) > 2 * len(fence) else ""
        if s.startswith(fence) and s.endswith(fence) and inner and "$" not in inner:
            return inner.strip()
    return s


def chat_user_parts(messages: list[dict], key: str) -> tuple[list[str], list]:
    """Texts and image references of the user turns of a chat (OpenAI / Qwen content-part style)."""
    texts, images = [], []
    for message in messages:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        if not isinstance(content, list):
            raise DataError("user content must be text or a list of parts", field=key)
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(str(part.get("text", "")))
            elif kind in ("image", "image_url"):
                ref = part.get("image") or part.get("image_url")
                images.append(ref.get("url") if isinstance(ref, dict) else ref)
    return texts, images
