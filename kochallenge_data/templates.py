"""The jinja2 environment for templates and pool phrases.

Sandboxed (users bring their own templates) and strict (an unknown variable is an error, never an
empty string). Every template is parsed and its variables checked when it is loaded, so a typo is
reported with file and line before anything is generated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment

from .errors import TemplateError
from .josa import attach_particle
from .resources import shipped_dir

# Each template the generator renders, with the variables it provides to it.
TEMPLATE_VARIABLES: Mapping[str, frozenset[str]] = {
    "base_info_input.j2": frozenset({"location", "work_type", "category"}),
    "free_text_input.j2": frozenset({"message"}),
    "feedback": frozenset({"sentences"}),
    "prompt.j2": frozenset({"instruction", "input"}),
}
FEEDBACK_LAYOUT_DIR = "feedback"


def _josa_filter(word: Any, pair: str) -> str:
    try:
        return _attach_particle(str(word), pair)
    except ValueError as exc:
        raise TemplateError(str(exc)) from exc


# The same titles and places take the same particles all through a build.
_attach_particle = lru_cache(maxsize=65536)(attach_particle)


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters["josa"] = _josa_filter
    return env


def check_phrase_slots(text: str, allowed: frozenset[str], where: str) -> None:
    """Reject a pool phrase that does not parse or uses a slot its pool does not fill."""
    env = environment()
    try:
        parsed = env.parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{where}: template syntax error in phrase {text!r}: {exc.message}") from exc
    unknown = sorted(meta.find_undeclared_variables(parsed) - allowed)
    if unknown:
        slots = ", ".join(sorted(allowed)) or "none"
        raise TemplateError(f"{where}: phrase {text!r} uses unknown slot(s) {unknown}; available: {slots}")


@lru_cache(maxsize=4096)
def phrase_slots(text: str) -> frozenset[str]:
    """The slots a phrase uses (a request frame is chosen by exactly the slots it has)."""
    return frozenset(meta.find_undeclared_variables(environment().parse(text)))


def render_phrase(text: str, **values: Any) -> str:
    """Render a pool phrase (compiled once per distinct text)."""
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
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif part.name not in values:
            return None
        elif part.particle is None:
            out.append(str(values[part.name]))
        else:
            out.append(str(_josa_filter(values[part.name], part.particle)))
    return "".join(out).strip()


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    source: str

    def render(self, **values: Any) -> str:
        fast = render_simple(self.source, values)
        if fast is not None:
            return fast
        try:
            rendered: str = compiled(self.source).render(**values)
            return rendered.strip()
        except JinjaTemplateError as exc:
            raise TemplateError(f"{self.path}: {exc}") from exc


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
    """Load and check every template under ``root`` (the shipped templates by default)."""
    root_path = Path(root) if root is not None else default_templates_dir()
    if not root_path.is_dir():
        raise TemplateError(f"{root_path}: templates folder not found; pass --templates with a folder")
    layouts_dir = root_path / FEEDBACK_LAYOUT_DIR
    layout_paths = sorted(layouts_dir.glob("*.j2"))
    if not layout_paths:
        raise TemplateError(f"{layouts_dir}: no feedback layouts (*.j2) found")
    prompt_path = root_path / "prompt.j2"
    return Templates(
        root=root_path,
        base_info_input=load_template(root_path / "base_info_input.j2", TEMPLATE_VARIABLES["base_info_input.j2"]),
        free_text_input=load_template(root_path / "free_text_input.j2", TEMPLATE_VARIABLES["free_text_input.j2"]),
        feedback_layouts=tuple(load_template(path, TEMPLATE_VARIABLES["feedback"]) for path in layout_paths),
        prompt=load_template(prompt_path, TEMPLATE_VARIABLES["prompt.j2"]) if prompt_path.exists() else None,
    )


def load_template(path: Path, variables: frozenset[str]) -> Template:
    """Read one template and check its syntax and variables, naming file and line on error."""
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(f"{path}: template not found") from None
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{path}: not UTF-8 text") from exc
    env = environment()
    try:
        parsed = env.parse(source, name=path.name, filename=str(path))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{path}:{exc.lineno}: template syntax error: {exc.message}") from exc
    unknown = sorted(meta.find_undeclared_variables(parsed) - variables)
    if unknown:
        line = _first_line_using(source, unknown[0])
        raise TemplateError(
            f"{path}:{line}: unknown variable(s) {unknown}; this template gets: {', '.join(sorted(variables))}"
        )
    return Template(name=path.name, path=path, source=source)


def _first_line_using(source: str, variable: str) -> int:
    for number, line in enumerate(source.splitlines(), start=1):
        if variable in line:
            return number
    return 1
