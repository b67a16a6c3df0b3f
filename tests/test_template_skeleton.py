from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kochallenge_data.template_skeleton import render_by_skeleton
from kochallenge_data.templates import compiled, load_templates

from .strategies import mixed_text

MARKERS = st.sampled_from(["\ue000", "\ue001", "\ue002", "\ue000x\ue0010\ue001text\ue002"])
values_text = st.one_of(mixed_text, st.lists(st.one_of(mixed_text, MARKERS), max_size=4).map("".join))
sentences = st.lists(
    st.fixed_dictionaries({"text": values_text, "emoji": values_text, "emoji2": values_text}), max_size=5
)

SHIPPED = [layout.source for layout in load_templates(None).feedback_layouts]
# Layouts that read a text rather than copy it, or go beyond the grammar: jinja must render these.
READING = [
    "{% for s in sentences %}{% if s.text|length > 3 %}{{ s.text }}{% endif %}{% endfor %}",
    "{% for s in sentences %}{{ s.text|upper }}{% endfor %}",
    "{% for s in sentences %}{{ loop.index }}. {{ s.text }}{% endfor %}",
    "{% for s in sentences %}{% set t = s.text %}{{ t }}{% endfor %}",
    "{% for s in sentences %}{% for t in sentences %}{{ t.text }}{% endfor %}{% endfor %}",
    "{% for s in sentences if s.text %}{{ s.text }}{% endfor %}",
    "{{ sentences|length }}{% for s in sentences %}{{ s['text'] }}{% endfor %}",
    "{% if sentences %}{{ sentences[0].text }}{% endif %}",
]
# Within the grammar, shapes the shipped layouts do not use.
COPYING = [
    "{% for s in sentences %}{% if loop.first and not loop.last %}[{% elif loop.last %}]{% else %}, {% endif %}"
    "{{ s.emoji2 }}{{ s.text }}{% endfor %}",
    "  {{ sentences[0].text }} {{ sentences[-2].emoji }}\n",
    "\ue000 {% for s in sentences %}{{ s.text }}{% endfor %}",
]


def jinja(source: str, items: list[dict[str, str]]) -> str | Exception:
    try:
        return str(compiled(source).render(sentences=items)).strip()
    except Exception as exc:  # the failure itself is what is compared
        return exc


@settings(max_examples=300)
@given(items=sentences, source=st.sampled_from(SHIPPED + COPYING + READING))
def test_a_skeleton_render_is_jinjas_render_or_none(items: list[dict[str, str]], source: str) -> None:
    fast = render_by_skeleton(source, {"sentences": items})
    if fast is not None:
        assert fast == jinja(source, items)


@pytest.mark.parametrize("source", SHIPPED + COPYING[:2])
def test_the_shipped_layouts_and_copying_shapes_take_the_skeleton(source: str) -> None:
    items = [
        {"text": " 첫 문장이에요. ", "emoji": "🌱", "emoji2": "🎉"},
        {"text": "둘째예요!", "emoji": "💚", "emoji2": "🙌🏻"},
    ]
    assert render_by_skeleton(source, {"sentences": items}) == jinja(source, items)


@pytest.mark.parametrize("source", READING + COPYING[2:])
def test_layouts_that_read_their_texts_are_left_to_jinja(source: str) -> None:
    items = [{"text": "첫 문장이에요.", "emoji": "🌱", "emoji2": "🎉"}]
    assert render_by_skeleton(source, {"sentences": items}) is None


def test_values_of_another_shape_are_left_to_jinja() -> None:
    source = SHIPPED[0]
    assert render_by_skeleton(source, {"sentences": [{"text": 1, "emoji": "🌱", "emoji2": "🎉"}]}) is None
    assert render_by_skeleton(source, {"sentences": ({"text": "a", "emoji": "🌱", "emoji2": "🎉"},)}) is None
    assert render_by_skeleton(source, {"sentences": []}) is None  # sentences[-1] fails: jinja says so
