"""Render a layout once per shape and fill in the text, where the layout cannot tell one text from another.

A feedback layout loops over its sentences and writes each one's text and emoji, with ``loop.first`` and
``loop.last`` deciding the spaces between them. What it writes then depends only on how many sentences there are;
the texts are copied, never read. For such a layout, :func:`render_by_skeleton` renders it with jinja once per
number of items, with markers in place of the texts, and fills the markers in on every later render: the same
string jinja would give, for a fraction of a sandboxed render.

Whether a layout is of that kind is decided from its syntax tree, by a small grammar: literal text; ``{{ x.f }}``
where ``x`` is the loop variable or ``items[n]``; a ``for`` over a list of the values (not nested); ``if`` on
``loop.first`` and ``loop.last`` with ``not``, ``and`` and ``or``. Anything else (a filter, a test on a text, a
``set``) is left to jinja, as are values of any other shape and renders near the sandbox's limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

from .template_sandbox import BASE_SIZE

# Private-use characters mark where a value goes; a layout holding one is left to jinja.
_OPEN, _SEP, _CLOSE = "\ue000", "\ue001", "\ue002"
_MARKER = re.compile(f"{_OPEN}([^{_SEP}]*){_SEP}(\\d+){_SEP}([^{_CLOSE}]*){_CLOSE}")
_LOOP_FLAGS = frozenset({"first", "last"})
# Items a render by skeleton may loop over: far below the sandbox's step limit, whatever the layout.
MAX_ITEMS = 1000


def render_by_skeleton(source: str, values: Mapping[str, Any]) -> str | None:
    """``source`` rendered with ``values`` and stripped, as jinja renders it; None where this cannot be sure."""
    shape = _shape(values)
    if shape is None or not _copies_only(source):
        return None
    parts = _skeleton(source, shape)
    if parts is None:
        return None
    filled = "".join([part if type(part) is str else values[part[0]][part[1]][part[2]] for part in parts])
    if len(filled) > BASE_SIZE:  # near the sandbox's size limit: jinja decides
        return None
    return filled.strip()


Shape = tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]


def _shape(values: Mapping[str, Any]) -> Shape | None:
    """Per variable, the fields of each item; None unless every value is a short list of dicts of strings."""
    shape = []
    for name, items in values.items():
        if type(items) is not list or len(items) > MAX_ITEMS:
            return None
        fields = []
        for item in items:
            if type(item) is not dict or not _plain_fields(keys := tuple(item)):
                return None
            for value in item.values():
                if type(value) is not str:
                    return None
            fields.append(keys)
        shape.append((name, tuple(fields)))
    return tuple(shape) if all(map(_plain, values)) else None


@lru_cache(maxsize=256)
def _plain_fields(keys: tuple[object, ...]) -> bool:
    return all(type(key) is str and _plain(key) for key in keys)


def _plain(name: str) -> bool:
    return not any(marker in name for marker in (_OPEN, _SEP, _CLOSE))


Part = str | tuple[str, int, str]  # literal text, or where a value goes: variable, item, field


@lru_cache(maxsize=256)
def _skeleton(source: str, shape: Shape) -> tuple[Part, ...] | None:
    """The layout rendered by jinja with a marker for each value, cut into text and values (not stripped: the
    values may hold the edges); None where that render fails (jinja's own render then says why)."""
    from .templates import compiled

    markers = {
        name: [
            {field: f"{_OPEN}{name}{_SEP}{k}{_SEP}{field}{_CLOSE}" for field in fields}
            for k, fields in enumerate(items)
        ]
        for name, items in shape
    }
    try:
        rendered: str = compiled(source).render(**markers)
    except Exception:  # any failure is left to the render that reports it
        return None
    pieces = _MARKER.split(rendered)  # text, then name, item and field of each marker, then text
    parts: list[Part] = []
    for at in range(0, len(pieces), 4):
        parts.append(pieces[at])
        if at + 3 < len(pieces):
            parts.append((pieces[at + 1], int(pieces[at + 2]), pieces[at + 3]))
    return tuple(part for part in parts if part != "")


@lru_cache(maxsize=256)
def _copies_only(source: str) -> bool:
    """Whether the layout only copies its values (the grammar in the module docstring)."""
    if not _plain(source):
        return False
    from .templates import environment

    try:
        parsed = environment().parse(source)
    except TemplateSyntaxError:
        return False
    return _statements_copy(parsed.body, loop_variable=None)


def _statements_copy(body: list[nodes.Node], loop_variable: str | None) -> bool:
    for node in body:
        if isinstance(node, nodes.Output):
            if not all(
                isinstance(child, nodes.TemplateData) or _is_value(child, loop_variable) for child in node.nodes
            ):
                return False
        elif isinstance(node, nodes.For):
            if (
                loop_variable is not None
                or node.else_
                or node.test is not None
                or node.recursive
                or not isinstance(node.target, nodes.Name)
                or not isinstance(node.iter, nodes.Name)
                or node.target.name == "loop"
                or not _statements_copy(node.body, node.target.name)
            ):
                return False
        elif isinstance(node, nodes.If):
            if loop_variable is None or not _is_loop_test(node.test):
                return False
            branches: list[list[nodes.Node]] = [node.body, node.else_, list(node.elif_)]  # each elif is an If
            if not all(_statements_copy(branch, loop_variable) for branch in branches):
                return False
        else:
            return False
    return True


def _is_value(node: nodes.Node, loop_variable: str | None) -> bool:
    """``{{ s.text }}`` in a loop over items, or ``{{ items[-1].emoji }}``."""
    if not isinstance(node, nodes.Getattr):
        return False
    owner = node.node
    if isinstance(owner, nodes.Name):
        return owner.name == loop_variable
    if not isinstance(owner, nodes.Getitem) or not isinstance(owner.node, nodes.Name):
        return False
    index = owner.arg.node if isinstance(owner.arg, nodes.Neg) else owner.arg  # items[-1] is Neg(Const(1))
    return isinstance(index, nodes.Const) and type(index.value) is int


def _is_loop_test(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Not):
        return _is_loop_test(node.node)
    if isinstance(node, nodes.And | nodes.Or):
        return _is_loop_test(node.left) and _is_loop_test(node.right)
    return (
        isinstance(node, nodes.Getattr)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "loop"
        and node.attr in _LOOP_FLAGS
    )
