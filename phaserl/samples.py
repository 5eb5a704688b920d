"""Sample rows: what the run report's rollout browser shows for one completion.

One row per completion, written to OUTPUT/samples/<stage>.jsonl by MetricsLog.samples (which adds the stage
and step). A row holds the rendered prompt (text with `<image>` where each image sits, the caption when the
view shows one, small JPEG thumbnails of the images as data URIs), the completion, the answer the accuracy
reward extracted, the gold answer, and every reward component, so the browser needs nothing but the row.
"""

from __future__ import annotations

import base64
import io

from phaserl.rewards.extract import extract_answer

MAX_PROMPT_CHARS = 2000
MAX_COMPLETION_CHARS = 8000  # a runaway completion would bloat samples/*.jsonl; the cut is marked
THUMB_PX = 128  # longest side of a thumbnail
THUMB_QUALITY = 70
# The reward component that says whether the answer is right: the accuracy reward, else the demo's last-number one.
CORRECTNESS = ("accuracy", "last_number")


def thumbnail_uri(image, px: int = THUMB_PX) -> str | None:
    """A small JPEG of a PIL image (or anything load_image reads) as a data URI; None when unreadable."""
    try:
        from phaserl.data.images import load_image

        img = load_image(image).convert("RGB")
        img.thumbnail((px, px))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=THUMB_QUALITY)
    except Exception:  # a broken image must not stop a training step's logging
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def prompt_text(messages: list[dict]) -> tuple[str, str | None]:
    """(user text with `<image>` placeholders, system text or None) of a rendered chat prompt."""
    system = next(
        (m["content"] for m in messages if m.get("role") == "system" and isinstance(m["content"], str)), None
    )
    content = messages[-1]["content"]
    if isinstance(content, str):
        return content, system
    return " ".join("<image>" if c["type"] == "image" else c.get("text", "") for c in content), system


def view_of(prompt_text_: str, n_images: int, caption: str | None) -> str:
    """The view a row was rendered in, read back from the prompt (Rollouts do not carry the stage)."""
    if not n_images:
        return "text"
    return "image+caption" if caption and caption in prompt_text_ else "image"


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with a note saying how much was dropped."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters not logged]"


def sample_rows(r, k: int) -> list[dict]:
    """Rows for the first k completions of a phaserl.collect.Rollouts (whole groups first: sample i is prompt i // G).

    Keys: id, source, group, view, prompt, system, caption, images (thumbnail data URIs), completion,
    completion_tokens, extracted, answer (gold), correct (the accuracy component, or last_number; None when
    n/a), truncated,
    reward (total), reward/<component> for each component, entropy (when the engine reports it).
    """
    entropy = getattr(r.completions, "entropy", None)
    thumbs: dict[int, list[str]] = {}  # [B] prompt index -> thumbnails, made once per prompt
    out = []
    for i in range(min(k, len(r.completions))):
        b = i // r.G
        ex, prompt = r.examples[b], r.prompts[b]
        text, system = prompt_text(prompt.messages)
        view = view_of(text, len(prompt.images), ex.caption)
        if b not in thumbs:
            thumbs[b] = [u for u in (thumbnail_uri(im) for im in prompt.images) if u]
        completion = r.completions.texts[i]
        components = {name: v[i] for name, v in r.rewards.components.items()}
        correct = next((components[k] for k in CORRECTNESS if k in components), None)
        out.append(
            {
                "id": ex.id,
                "source": ex.source,
                "group": b,
                "view": view,
                "prompt": clip(text, MAX_PROMPT_CHARS),
                "system": system,
                "caption": ex.caption if view == "image+caption" else None,
                "images": thumbs[b],
                "completion": clip(completion, MAX_COMPLETION_CHARS),
                "completion_tokens": len(r.completions.completion_ids[i]),
                "extracted": extract_answer(completion),
                "answer": ex.answer,
                "correct": None if correct is None else bool(correct >= 1.0),
                "truncated": bool(r.completions.truncated[i]),
                "reward": r.rewards.total[i],
                **{f"reward/{name}": v for name, v in components.items()},
                **({"entropy": float(entropy[i])} if entropy is not None and entropy[i] is not None else {}),
            }
        )
    return out
