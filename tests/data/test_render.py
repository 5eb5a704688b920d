import pytest
from PIL import Image

from phaserl.data.render import render
from phaserl.data.schema import DataError, Example

IMG = Image.new("RGB", (28, 28), "white")
EX = Example(id="1", question="What is 2+3?", answer="5", images=[IMG], caption="The digits 2 + 3.")


def _text(prompt):
    content = prompt.messages[-1]["content"]
    return content if isinstance(content, str) else content[-1]["text"]


def test_three_views_of_one_example():
    text = render(EX, "text")
    assert text.images == [] and "Caption" not in _text(text)
    cap = render(EX, "image+caption")
    assert len(cap.images) == 1 and "Caption: The digits 2 + 3." in _text(cap)
    assert cap.messages[-1]["content"][0] == {"type": "image"}  # image first, as Qwen2.5-VL expects
    img = render(EX, "image")
    assert len(img.images) == 1 and "Caption" not in _text(img)


def test_templates_and_choices():
    p = render(Example(id="2", question="Pick one.", answer="B", choices=["1", "2"]), "text", "lmm_r1")
    assert p.messages[0]["role"] == "system" and "<think>" in p.messages[0]["content"]
    assert "(A) 1\n(B) 2" in _text(p)


def test_text_example_in_image_view_renders_as_text_and_missing_caption_is_an_error():
    plain = Example(id="3", question="What is 1+1?", answer="2")
    assert render(plain, "image+caption").images == []
    with pytest.raises(DataError, match="needs a caption"):
        render(Example(id="4", question="q", answer="1", images=[IMG]), "image+caption")
    with pytest.raises(DataError, match="image not found"):
        render(Example(id="5", question="q", answer="1", images=["/nonexistent.png"]), "image")


def test_text_view_uses_the_text_form_of_an_image_problem():
    ex = Example(
        id="6",
        question="Solve the problem in the image.",
        answer="5",
        images=[IMG],
        caption="2+3",
        meta={"text_question": "What is 2+3?"},
    )
    assert _text(render(ex, "text")) == "What is 2+3?"
    assert _text(render(ex, "image")) == "Solve the problem in the image."
