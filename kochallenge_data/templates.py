"""The jinja2 environment for templates and pool phrases.

Sandboxed (users bring their own templates) and strict (an unknown variable is an error, never an
empty string). Every template is parsed and its variables checked when it is loaded, so a typo is
reported with file and line before anything is generated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import TemplateError as JinjaTemplateError

from .errors import TemplateError
from .josa import PARTICLE_PAIRS, attach_particle
from .resources import shipped_dir
from .safe_files import UnsafeFileError, read_user_text
from .template_sandbox import BoundedSandbox
from .template_skeleton import render_by_skeleton

# Each template the generator renders, with the variables it provides to it.
TEMPLATE_VARIABLES: Mapping[str, frozenset[str]] = {
    "base_info_input.j2": frozenset({"location", "work_type", "category"}),
    "free_text_input.j2": frozenset({"message"}),
    "feedback": frozenset({"sentences"}),
    "prompt.j2": frozenset({"instruction", "input"}),
}
FEEDBACK_LAYOUT_DIR = "feedback"
# Templates whose text is one line of a record's input: a line break there changes what the record is.
SINGLE_LINE_TEMPLATES = frozenset({"base_info_input.j2", "free_text_input.j2"})
MAX_TEMPLATE_BYTES = 64 * 1024
"""A layout is a few lines; a larger file is not a template a person wrote."""
# Every way str.splitlines ends a line: a pool phrase is one line of a record.
LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _josa_filter(word: Any, pair: str) -> str:
    try:
        return _attach_particle(str(word), pair)
    except ValueError as exc:
        raise TemplateError(str(exc)) from exc


# The same titles and places take the same particles all through a build.
_attach_particle = lru_cache(maxsize=65536)(attach_particle)


@lru_cache(maxsize=1)
def environment() -> BoundedSandbox:
    env = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters["josa"] = _josa_filter
    return env


def check_phrase_slots(text: str, allowed: frozenset[str], where: str) -> None:
    """Reject a pool phrase that is not one line of plain text with slots, or uses a slot its pool does not fill.

    Phrases are data, not programs: ``{{ slot }}`` and ``{{ slot | josa("을/를") }}`` are all they may use, so
    a pool file cannot compute, loop or call anything, and every phrase renders on the fast path.
    """
    slots = ", ".join(sorted(allowed)) or "none"
    if any(char in LINE_BREAKS for char in text):
        raise TemplateError(f"{where}: phrase {text!r} has a line break; a phrase is one line")
    try:
        parsed = environment().parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{where}: template syntax error in phrase {text!r}: {exc.message}") from exc
    parts = simple_parts(text)
    if parts is None:
        raise TemplateError(
            f"{where}: phrase {text!r} is not plain text with slots; a phrase may only use "
            f'{{{{ slot }}}} and {{{{ slot | josa("을/를") }}}} (slots here: {slots})'
        )
    for part in parts:
        if isinstance(part, Slot) and part.particle is not None and part.particle not in PARTICLE_PAIRS:
            known = ", ".join(sorted(PARTICLE_PAIRS))
            raise TemplateError(
                f"{where}: phrase {text!r} uses unknown particle pair {part.particle!r}; use one of: {known}"
            )
    unknown = sorted(meta.find_undeclared_variables(parsed) - allowed)
    if unknown:
        raise TemplateError(f"{where}: phrase {text!r} uses unknown slot(s) {unknown}; available: {slots}")


@lru_cache(maxsize=4096)
def phrase_slots(text: str) -> frozenset[str]:
    """The slots a phrase uses (a request frame is chosen by exactly the slots it has)."""
    return frozenset(meta.find_undeclared_variables(environment().parse(text)))


def render_phrase(text: str, **values: Any) -> str:
    """Render a pool phrase (compiled once per distinct text)."""
    return render_phrase_from(text, values)


def render_phrase_from(text: str, values: Mapping[str, Any]) -> str:
    """:func:`render_phrase` with the slot values in a mapping (no keyword arguments to unpack and pack again)."""
    fast = render_simple(text, values)
    if fast is not None:
        return fast
    rendered: str = compiled(text).render(**values)
    return rendered.strip()


@lru_cache(maxsize=65536)
def compiled(text: str) -> Any:
    """The compiled template for ``text``, built once per distinct source."""
    template = environment().from_string(text)
    # jinja gives a template a ChainMap over the environment's globals and copies it on every render,
    # which is a third of rendering a feedback layout. Nothing adds globals once the environment is
    # built, so a plain dict of the same items renders the same text.
    template.globals = dict(template.globals)
    return template


@dataclass(frozen=True)
class Slot:
    """``{{ name }}`` or ``{{ name | josa("을/를") }}`` in a simple template."""

    name: str
    particle: str | None  # the josa pair, or None for the bare value


# A simple template: literal text and slots, in order.
SimpleParts = tuple[str | Slot, ...]


@lru_cache(maxsize=65536)
def simple_parts(text: str) -> SimpleParts | None:
    """The template as literal text and slots, or None when it uses anything else (jinja renders those).

    Pool phrases are almost all of this shape, and a jinja render costs far more than joining the parts;
    jinja's own parser splits the text, so literal text comes out exactly as jinja would write it.
    """
    if "{" not in text and "\r" not in text:
        return (text,)  # no tag, slot or comment, and no line ending for jinja to normalise: the text itself
    try:
        parsed = environment().parse(text)
    except TemplateSyntaxError:
        return None
    parts: list[str | Slot] = []
    for statement in parsed.body:
        if not isinstance(statement, nodes.Output):
            return None
        for node in statement.nodes:
            part = _simple_part(node)
            if part is None:
                return None
            parts.append(part)
    return tuple(parts)


def _simple_part(node: nodes.Node) -> str | Slot | None:
    if isinstance(node, nodes.TemplateData):
        data: str = node.data
        return data
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return Slot(node.name, None)
    if (
        isinstance(node, nodes.Filter)
        and node.name == "josa"
        and isinstance(node.node, nodes.Name)
        and len(node.args) == 1
        and isinstance(node.args[0], nodes.Const)
        and isinstance(node.args[0].value, str)
        and not node.kwargs
        and node.dyn_args is None
        and node.dyn_kwargs is None
    ):
        return Slot(node.node.name, node.args[0].value)
    return None


def render_simple(text: str, values: Mapping[str, Any]) -> str | None:
    """``text`` rendered without jinja when it is simple and every slot it uses has a value, else None.

    The result is what jinja gives (``str`` of each value, the josa filter for a particle, stripped);
    anything else, a missing value included, is left to jinja so its errors stay the same.
    """
    parts = simple_parts(text)
    if parts is None:
        return None
    if len(parts) == 1 and type(parts[0]) is str:
        return parts[0].strip()  # no slot: the phrase itself
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        name, particle = part.name, part.particle
        if name not in values:
            return None
        out.append(str(values[name]) if particle is None else _josa_filter(values[name], particle))
    return "".join(out).strip()


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    source: str
    single_line: bool = False  # a line of a record's input: a render with a line break is refused

    def render(self, **values: Any) -> str:
        """The rendered text; anything the template does wrong becomes a TemplateError naming its file."""
        fast = render_simple(self.source, values)
        if fast is None:
            fast = render_by_skeleton(self.source, values)
        if fast is None:
            try:
                fast = str(compiled(self.source).render(**values)).strip()
            except TemplateError as exc:
                raise TemplateError(f"{self.path}: {exc}") from exc
            except RENDER_FAILURES as exc:
                raise TemplateError(f"{self.path}: {describe_render_failure(exc)}") from exc
        if self.single_line and any(char in LINE_BREAKS for char in fast):
            raise TemplateError(f"{self.path}: renders a line break ({fast!r}); this template must render one line")
        return fast


# What a user template can raise while it runs: jinja's own errors (the sandbox's refusals and the limits
# included), what its expressions do wrong (1/0, a recursive macro, range(10**9), int("x")), and the
# AssertionError jinja's filters raise for a bad argument (truncate(0)).
RENDER_FAILURES = (
    JinjaTemplateError,
    ArithmeticError,
    RecursionError,
    TypeError,
    ValueError,
    LookupError,
    AssertionError,
)


def describe_render_failure(exc: BaseException) -> str:
    """One line saying what went wrong in a render."""
    if isinstance(exc, RecursionError):
        return "recursion too deep (a macro that calls itself?)"
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, JinjaTemplateError):
        return message
    return f"{type(exc).__name__}: {message}"


@dataclass(frozen=True)
class Templates:
    root: Path
    base_info_input: Template
    free_text_input: Template
    feedback_layouts: tuple[Template, ...]
    prompt: Template | None

    @property
    def files(self) -> tuple[Path, ...]:
        items = [self.base_info_input, self.free_text_input, *self.feedback_layouts]
        if self.prompt is not None:
            items.append(self.prompt)
        return tuple(t.path for t in items)


def default_templates_dir() -> Path:
    return shipped_dir("templates")


def load_templates(root: Path | str | None = None) -> Templates:
    """Load and check every template under ``root`` (the shipped templates by default).

    Only regular files inside ``root`` are read: a symlink that leaves the folder, a FIFO or a folder named
    like a template is refused with its path.
    """
    root_path = Path(root) if root is not None else default_templates_dir()
    if not root_path.is_dir():
        raise TemplateError(f"{root_path}: templates folder not found; pass --templates with a folder")
    layouts_dir = root_path / FEEDBACK_LAYOUT_DIR
    layout_paths = sorted(layouts_dir.glob("*.j2"))
    if not layout_paths:
        raise TemplateError(f"{layouts_dir}: no feedback layouts (*.j2) found")
    prompt_path = root_path / "prompt.j2"

    def load(path: Path, variables: frozenset[str]) -> Template:
        return load_template(path, variables, root=root_path)

    return Templates(
        root=root_path,
        base_info_input=load(root_path / "base_info_input.j2", TEMPLATE_VARIABLES["base_info_input.j2"]),
        free_text_input=load(root_path / "free_text_input.j2", TEMPLATE_VARIABLES["free_text_input.j2"]),
        feedback_layouts=tuple(load(path, TEMPLATE_VARIABLES["feedback"]) for path in layout_paths),
        # lexists: a broken or looping symlink named prompt.j2 is an error, not a missing file.
        prompt=load(prompt_path, TEMPLATE_VARIABLES["prompt.j2"]) if os.path.lexists(prompt_path) else None,
    )


def load_template(path: Path, variables: frozenset[str], root: Path | None = None) -> Template:
    """Read one template, check its syntax and variables and compile it, naming file and line on error.

    With ``root``, the file must really be inside that folder (symlinks followed).
    """
    try:
        source = read_user_text(path, inside=root, limit=MAX_TEMPLATE_BYTES)
    except UnsafeFileError as exc:
        raise TemplateError(str(exc).replace(": no such file", ": template not found")) from None
    env = environment()
    try:
        parsed = env.parse(source, name=path.name, filename=str(path))
        compiled(source)  # the compiler refuses include, import, extends and unknown filters
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{path}:{exc.lineno}: template syntax error: {exc.message}") from exc
    unknown = sorted(meta.find_undeclared_variables(parsed) - variables)
    if unknown:
        line = _first_line_using(source, unknown[0])
        raise TemplateError(
            f"{path}:{line}: unknown variable(s) {unknown}; this template gets: {', '.join(sorted(variables))}"
        )
    return Template(name=path.name, path=path, source=source, single_line=path.name in SINGLE_LINE_TEMPLATES)


def _first_line_using(source: str, variable: str) -> int:
    for number, line in enumerate(source.splitlines(), start=1):
        if variable in line:
            return number
    return 1
