"""The single prompt layout shared by training, the tokenizer audit and serving.

Training learns ``render_prompt(instruction, input)`` followed by the output and the tokenizer's
eos; serving sends exactly ``render_prompt`` for a request, with an instruction phrasing taken
from the dataset's own pool, so the served prompt is a prompt the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import TemplateError
from .models import Task
from .pools import Pools
from .templates import (
    RENDER_FAILURES,
    TEMPLATE_VARIABLES,
    Template,
    compiled,
    default_templates_dir,
    describe_render_failure,
    load_template,
)

PROMPT_FILE = "prompt.j2"
EXACT_MARK = "{#- exact -#}"
"""First line of a layout rendered byte for byte (one derived from a chat template); others end in one newline."""


@dataclass(frozen=True)
class PromptLayout:
    """A loaded prompt template; ``source`` is what training saves beside the adapter."""

    path: Path
    source: str

    @property
    def exact(self) -> bool:
        return self.source.startswith(EXACT_MARK)

    def render(self, instruction: str, input: str) -> str:
        """The prompt text: byte for byte for an exact layout, else ending in exactly one newline."""
        try:
            body: str = compiled(self.source).render(instruction=instruction, input=input)
        except RENDER_FAILURES as exc:  # a user's prompt.j2 is a program too (export, train and serve render it)
            raise TemplateError(f"{self.path}: {describe_render_failure(exc)}") from exc
        return body if self.exact else body.rstrip("\n") + "\n"


def load_prompt_layout(path: Path | str | None = None) -> PromptLayout:
    """Load ``templates/prompt.j2`` (or a given file) and check its variables."""
    prompt_path = Path(path) if path is not None else default_templates_dir() / PROMPT_FILE
    template: Template = load_template(prompt_path, TEMPLATE_VARIABLES["prompt.j2"])
    if "{{ instruction" not in template.source or "{{ input" not in template.source:
        raise TemplateError(f"{prompt_path}: a prompt template must use both {{{{ instruction }}}} and {{{{ input }}}}")
    return PromptLayout(path=prompt_path, source=template.source)


def render_prompt(instruction: str, input: str, layout: PromptLayout | None = None) -> str:
    return (layout or load_prompt_layout()).render(instruction, input)


def serving_instruction(pools: Pools, task: Task) -> str:
    """The instruction the server sends: the first phrasing of the task's pool, so always a trained one."""
    return pools.instructions[task][0].text
