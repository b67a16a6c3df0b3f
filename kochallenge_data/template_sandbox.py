"""The bounded jinja sandbox that renders user templates and pool phrases.

A template passed with ``--templates`` is someone else's program. jinja's sandbox blocks unsafe attributes;
this adds the limits it lacks, so abuse ends in an error that names the template instead of a hang, a
traceback or gigabytes of memory:

- a template is one file: ``{% include %}``, ``{% import %}``, ``{% extends %}`` and recursive loops are
  refused when it is compiled;
- a step budget per render: each loop iteration, call, operator and filter is a step, a filter on a large
  value costs in proportion to its size, so nested loops and recursive macros stop after bounded work;
- no wall-clock limit: a build must give the same bytes (or the same error) on a busy machine as on an idle one,
  so every limit counts work, never time;
- every value an operator, ``~`` or a filter builds is sized before it is built (repetition, ``join``,
  turning a nested list into text), and so is the text a render produces, captured blocks included;
- only filters and methods that cannot multiply their input; no ``str.format``, no ``%`` formatting,
  no mutation of lists and dicts, no ``namespace`` to carry growing state across loop iterations.

The size bounds grow with the text passed in, so a long input passes through a prompt layout unharmed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any

from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS as DEFAULT_FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_STEPS = 100_000
"""Loop iterations, calls, operators and filter work in one render; the shipped layouts use under 100."""
BASE_SIZE = 64 * 1024
"""Characters (or items) a render may build or write beyond the text it was given."""
PRODUCED_FACTOR = 16
"""All output of a render, captured blocks and macro bodies included, is at most this many times its size bound."""
MAX_INT_BITS = 65_536

# Filters that cannot build a value much larger than their input. Left out: center, indent, wordwrap, format,
# replace, batch, slice and sum (they multiply their input), random (a build must be reproducible), and the
# HTML and JSON helpers no plain-text template needs.
ALLOWED_FILTERS = frozenset(
    {
        "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "int",
        "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "reverse",
        "round", "select", "selectattr", "sort", "string", "striptags", "title", "trim", "truncate", "unique",
        "upper", "wordcount",
    }
)  # fmt: skip
# Methods a template may call on strings, numbers, lists and dicts: none builds more than its input.
ALLOWED_METHODS = frozenset(
    {
        "capitalize", "casefold", "count", "endswith", "find", "get", "index", "isalnum", "isalpha", "isdecimal",
        "isdigit", "islower", "isnumeric", "isspace", "istitle", "isupper", "items", "keys", "lower", "lstrip",
        "partition", "removeprefix", "removesuffix", "rfind", "rindex", "rpartition", "rsplit", "rstrip", "split",
        "splitlines", "startswith", "strip", "swapcase", "title", "upper", "values", "bit_length",
    }
)  # fmt: skip
_BUILTIN_TYPES = (str, bytes, int, float, complex, list, tuple, dict, set, frozenset, range)
_REMOVED_GLOBALS = ("lipsum", "namespace")

# Internal filters the compiler inserts; the colon keeps a template from naming them.
_COUNT_ITERATIONS = "limit:iterations"
_BOUNDED_CONCAT = "limit:concat"
_COUNT_OUTPUT = "limit:output"


class RenderLimitError(SecurityError):
    """A render went past one of the limits above."""


@dataclass
class RenderBudget:
    """What one render may still spend."""

    steps_left: int
    size_limit: int
    produced_left: int

    @classmethod
    def for_values(cls, values: dict[str, Any]) -> RenderBudget:
        given = sum(len(v) for v in values.values() if isinstance(v, str))
        size_limit = BASE_SIZE + 2 * given
        return cls(MAX_STEPS, size_limit, PRODUCED_FACTOR * size_limit)

    def step(self, cost: int = 1) -> None:
        self.steps_left -= cost
        if self.steps_left < 0:
            raise RenderLimitError(
                f"more than {MAX_STEPS:,} loop iterations, calls and operations in one render (nested loops or "
                "a macro that calls itself?)"
            )

    def produce(self, size: int) -> None:
        self.produced_left -= size
        if self.produced_left < 0:
            raise RenderLimitError(f"one render wrote more than {PRODUCED_FACTOR * self.size_limit:,} characters")


_BUDGET: ContextVar[RenderBudget | None] = ContextVar("render_budget", default=None)


def _size_limit() -> int:
    budget = _BUDGET.get()
    return budget.size_limit if budget is not None else BASE_SIZE


def _step(cost: int = 1) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.step(cost)


def text_size(value: Any, cap: int) -> int:
    """About how many characters ``str(value)`` has, nested lists and dicts included; counts only up to ``cap``.

    A list of 60,000 references to one 60,000-item list costs nothing to build and 10 GB to print, so every
    place that turns a value into text or repeats it sizes it first, with work bounded by ``cap``.
    """
    if isinstance(value, str):
        return len(value)
    total = 0
    stack = [value]
    while stack and total <= cap:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item) + 2
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, int) and not isinstance(item, bool):
            total += 1 + item.bit_length() // 3
        else:
            total += 8
    return total


def _check_size(value: Any, what: str) -> int:
    limit = _size_limit()
    size = text_size(value, limit)
    if size > limit:
        raise RenderLimitError(f"{what} would be more than {limit:,} characters")
    return size


def _count_iterations(iterable: Iterable[Any]) -> Iterable[Any]:
    budget = _BUDGET.get()
    return iterable if budget is None else _counting(iterable, budget)


def _counting(iterable: Iterable[Any], budget: RenderBudget) -> Iterator[Any]:
    for item in iterable:
        budget.step()
        yield item


def _bounded_concat(parts: tuple[Any, ...]) -> str:
    """``a ~ b``: the parts as text, sized before they are joined."""
    _check_size(parts, "a ~ concatenation")
    return "".join(map(str, parts))


def _count_output(value: Any) -> Any:
    """Each ``{{ ... }}`` a render writes, at the top level or into a captured block."""
    budget = _BUDGET.get()
    if budget is not None:
        size = len(value) if isinstance(value, str) else _check_size(value, "an output value")
        budget.produce(size)
    return value


def _charged(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` as a filter that costs a step per item or character of its input and refuses oversize input."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @wraps(func)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        value = args[skip] if len(args) > skip else None
        size = _check_size(value, f"the input of |{name}")
        _step(1 + size // 16)
        return func(*args, **kwargs)

    return filter_


def _bounded_join(join: Callable[..., str]) -> Callable[..., str]:
    """``|join``: the items and the separator sized together before joining (a long separator between many items
    is the one way join multiplies)."""

    @wraps(join)
    def filter_(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
        items = list(value)
        size = text_size(items, _size_limit()) + len(str(d)) * len(items)
        if size > _size_limit():
            raise RenderLimitError(f"|join would build more than {_size_limit():,} characters")
        _step(1 + size // 16)
        return join(eval_ctx, items, d, attribute)

    return filter_


class _Limiter(NodeTransformer):
    """Rewrites a parsed template so every loop, ``~`` and output goes through the budget."""

    def __init__(self, name: str | None, filename: str | None) -> None:
        self.name = name
        self.filename = filename

    def refuse(self, node: nodes.Node, message: str) -> None:
        raise TemplateSyntaxError(message, node.lineno, self.name, self.filename)

    def refuse_other_file(self, node: nodes.Node, tag: str) -> None:
        self.refuse(node, f"{tag} is not available: a template is one file; copy the shared text into it")

    def visit_Include(self, node: nodes.Include) -> None:
        self.refuse_other_file(node, "{% include %}")

    def visit_Import(self, node: nodes.Import) -> None:
        self.refuse_other_file(node, "{% import %}")

    def visit_FromImport(self, node: nodes.FromImport) -> None:
        self.refuse_other_file(node, "{% from ... import %}")

    def visit_Extends(self, node: nodes.Extends) -> None:
        self.refuse_other_file(node, "{% extends %}")

    def visit_For(self, node: nodes.For) -> nodes.Node:
        if node.recursive:
            self.refuse(node, "recursive loops are not available in templates")
        self.generic_visit(node)
        node.iter = _internal_filter(node.iter, _COUNT_ITERATIONS)  # type: ignore[arg-type]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _internal_filter(nodes.Tuple(node.nodes, "load", lineno=node.lineno), _BOUNDED_CONCAT)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [
            child if isinstance(child, nodes.TemplateData) else _internal_filter(child, _COUNT_OUTPUT)
            for child in node.nodes
        ]
        return node


def _internal_filter(node: nodes.Expr, name: str) -> nodes.Expr:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class BoundedTemplate(Template):
    """A template whose ``render`` runs under a fresh :class:`RenderBudget` and bounds the text it returns."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        values = dict(*args, **kwargs)
        budget = RenderBudget.for_values(values)
        token = _BUDGET.set(budget)
        try:
            pieces: list[str] = []
            size = 0
            for piece in self.root_render_func(self.new_context(values)):
                size += len(piece)
                if size > budget.size_limit:
                    raise RenderLimitError(f"the rendered text would be more than {budget.size_limit:,} characters")
                pieces.append(piece)
            return "".join(pieces)
        except Exception:
            self.environment.handle_exception()
        finally:
            _BUDGET.reset(token)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """jinja's immutable sandbox with the limits of this module."""

    template_class = BoundedTemplate
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._safe_attributes: dict[tuple[type, str, bool], bool] = {}
        for name in _REMOVED_GLOBALS:
            self.globals.pop(name, None)
        self.filters = {name: _charged(name, DEFAULT_FILTERS[name]) for name in sorted(ALLOWED_FILTERS)}
        self.filters["join"] = _bounded_join(DEFAULT_FILTERS["join"])
        self.filters[_COUNT_ITERATIONS] = _count_iterations
        self.filters[_BOUNDED_CONCAT] = _bounded_concat
        self.filters[_COUNT_OUTPUT] = _count_output

    def compile(
        self,
        source: str | nodes.Template,
        name: str | None = None,
        filename: str | None = None,
        raw: bool = False,
        defer_init: bool = False,
    ) -> Any:
        tree = self.parse(source, name, filename) if isinstance(source, str) else source
        limited = _Limiter(name, filename).visit(tree)
        limited.set_environment(self)
        if raw:
            return super().compile(limited, name, filename, True, defer_init)
        return super().compile(limited, name, filename, False, defer_init)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _step()
        _check_binop(operator, left, right, _size_limit())
        return self.binop_table[operator](left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        return super().call(__context, __obj, *args, **kwargs)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # The answer depends only on the type, the name and whether the value is a method; caching it keeps
        # `loop.last` and `s.text` in a layout's loop cheap.
        key = (type(obj), attr, callable(value))
        safe = self._safe_attributes.get(key)
        if safe is None:
            safe = super().is_safe_attribute(obj, attr, value) and not (
                key[2] and isinstance(obj, _BUILTIN_TYPES) and attr not in ALLOWED_METHODS
            )
            self._safe_attributes[key] = safe
        return safe

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if getattr(value, "__name__", None) not in ("format", "format_map") or super().wrap_str_format(value) is None:
            return None

        def refuse(*args: Any, **kwargs: Any) -> str:
            raise SecurityError("str.format is not available in templates; write the text out")

        return refuse


def _check_binop(operator: str, left: Any, right: Any, limit: int) -> None:
    """Refuse an operation whose result would be oversize, before Python allocates it."""
    sequences = (str, list, tuple)
    if operator == "*":
        if isinstance(left, sequences) and isinstance(right, int):
            size = text_size(left, limit) * max(right, 0)
        elif isinstance(right, sequences) and isinstance(left, int):
            size = text_size(right, limit) * max(left, 0)
        elif isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise RenderLimitError(f"a product of more than {MAX_INT_BITS:,} bits")
            return
        else:
            return
        if size > limit:
            raise RenderLimitError(f"a repetition would be more than {limit:,} characters")
    elif operator == "+" and isinstance(left, sequences) and isinstance(right, sequences):
        if text_size(left, limit) + text_size(right, limit) > limit:
            raise RenderLimitError(f"a sum would be more than {limit:,} characters")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int):
        if right > 0 and abs(left) > 1 and right * left.bit_length() > MAX_INT_BITS:
            raise RenderLimitError(f"a power of more than {MAX_INT_BITS:,} bits")
    elif operator == "%" and isinstance(left, str):
        raise SecurityError("% formatting is not available in templates; write the text out")
