"""Records as the model sees them: prompt tokens as serving sends them, then the completion and a stop.

There is one tokenization path, in training and in serving: the prompt text (``PromptLayout.render``)
tokenized with ``add_special_tokens=True``. In chat-template mode the layout is *derived from the
base's own chat template* (:func:`chat_prompt_layout`), so the same path reproduces exactly the ids
``apply_chat_template`` gives; that equality is checked on every record, not assumed.

The completion is tokenized on its own and always ends in a stop token the base generation stops on
(eos, or the chat template's end of turn), because a model that never saw it never stops. Lengths
are audited before any weight is loaded: a record that would lose completion tokens or its stop is
refused (or dropped and listed), never cut.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ...errors import KochallengeError
from ...models import Record
from ...prompt import EXACT_MARK, PromptLayout

IGNORE_INDEX = -100
"""The label value the loss skips: prompt tokens and padding."""

INSTRUCTION_MARK = "\x00KOCHALLENGE_INSTRUCTION\x00"
INPUT_MARK = "\x00KOCHALLENGE_INPUT\x00"


@dataclass(frozen=True)
class TokenizedExample:
    """One record as the model sees it; ``labels`` is IGNORE_INDEX over the prompt."""

    index: int
    input_ids: list[int]
    labels: list[int]
    prompt_length: int

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def completion_length(self) -> int:
        return self.length - self.prompt_length


@dataclass(frozen=True)
class LengthAudit:
    """Which examples fit in ``max_length`` and which would lose completion tokens or the stop."""

    max_length: int
    kept: list[TokenizedExample]
    truncated: list[TokenizedExample]

    def describe(self, limit: int = 5) -> str:
        shown = ", ".join(f"#{e.index} ({e.length} tokens)" for e in self.truncated[:limit])
        more = f" and {len(self.truncated) - limit} more" if len(self.truncated) > limit else ""
        return f"{shown}{more}"


def load_training_records(path: Path, *, minimum: int = 2) -> list[Record]:
    """Read a JSON array or JSONL dataset; every row must be an instruction/input/output record."""
    from ...validate import read_dataset

    records = []
    for index, row in enumerate(read_dataset(path)):
        try:
            records.append(Record.model_validate(row))
        except ValidationError as exc:
            first = exc.errors()[0]
            place = ".".join(str(p) for p in first["loc"]) or "record"
            raise KochallengeError(
                f"{path}: record {index}: {place}: {first['msg']}; run `python -m kochallenge_data validate {path}`"
            ) from exc
    if len(records) < minimum:
        raise KochallengeError(f"{path}: {len(records)} records; training needs at least {minimum}")
    return records


def tokenize_record(
    tokenizer: Any, layout: PromptLayout, record: Record, stop_id: int, index: int = 0
) -> TokenizedExample:
    """Prompt tokens as serving sends them, then the output and one stop token; the loss sees the last two."""
    prompt_ids = prompt_token_ids(tokenizer, layout, record, stop_id)
    completion_ids: list[int] = [*tokenizer(record.output, add_special_tokens=False)["input_ids"], stop_id]
    return _example(index, prompt_ids, completion_ids)


def _example(index: int, prompt_ids: list[int], completion_ids: list[int]) -> TokenizedExample:
    """The prompt masked from the loss, the completion learned."""
    return TokenizedExample(
        index=index,
        input_ids=prompt_ids + completion_ids,
        labels=[IGNORE_INDEX] * len(prompt_ids) + completion_ids,
        prompt_length=len(prompt_ids),
    )


def rendered_prompt_ids(tokenizer: Any, layout: PromptLayout, record: Record) -> list[int]:
    """The one tokenization path, in training and serving: the rendered prompt with the tokenizer's specials."""
    return list(tokenizer(layout.render(record.instruction, record.input), add_special_tokens=True)["input_ids"])


def adds_bos(tokenizer: Any) -> bool:
    """Whether tokenizing with special tokens puts the bos in front by itself."""
    bos = tokenizer.bos_token_id
    return isinstance(bos, int) and tokenizer("x", add_special_tokens=True)["input_ids"][:1] == [bos]


def prompt_token_ids(tokenizer: Any, layout: PromptLayout, record: Record, stop_id: int) -> list[int]:
    prompt_ids = rendered_prompt_ids(tokenizer, layout, record)
    if prompt_ids and prompt_ids[-1] == stop_id:
        raise KochallengeError(
            "the base tokenizer appends eos to every text, so the prompt would end the answer before it starts; "
            "use a base whose tokenizer adds only a bos (most decoder-only models)"
        )
    return prompt_ids


def chat_messages(instruction: str, input: str, *, system_role: bool) -> list[dict[str, str]]:
    """The instruction as the system message and the input as the user's, as the ``messages`` export writes them;
    templates without a system role get both in one user message."""
    if system_role:
        return [{"role": "system", "content": instruction}, {"role": "user", "content": input}]
    return [{"role": "user", "content": f"{instruction}\n\n{input}"}]


def chat_prompt_layout(tokenizer: Any, records: Sequence[Record]) -> tuple[PromptLayout, bool]:
    """A prompt layout that renders the base's chat template for (instruction, input), and whether the
    template takes a system message.

    The chat template is rendered once with marker strings, the markers become ``{{ instruction }}`` and
    ``{{ input }}``, and the bos text the tokenizer adds by itself is dropped. The result is checked
    against ``apply_chat_template`` on every record: a template that rewrites the content (strips it,
    adds dates) is refused rather than served differently from how it was trained.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise KochallengeError(
            "--prompt-mode chat-template: the base tokenizer has no chat_template; use an instruct base or the "
            "default --prompt-mode layout"
        )
    for system_role in (True, False):
        try:
            text = tokenizer.apply_chat_template(
                chat_messages(INSTRUCTION_MARK, INPUT_MARK, system_role=system_role),
                tokenize=False,
                add_generation_prompt=True,
            )
        except Exception:  # a template that rejects a system message raises from inside jinja
            continue
        if system_role and INSTRUCTION_MARK not in text:
            continue  # the template dropped the system message silently
        layout = PromptLayout(path=Path("<chat template>"), source=_as_jinja(text, tokenizer))
        _check_chat_layout(tokenizer, layout, records, system_role)
        return layout, system_role
    raise KochallengeError("--prompt-mode chat-template: the base chat template renders neither system nor user turns")


def _as_jinja(rendered: str, tokenizer: Any) -> str:
    bos = getattr(tokenizer, "bos_token", None)
    if bos and adds_bos(tokenizer) and rendered.startswith(bos):
        rendered = rendered[len(bos) :]  # tokenizing with special tokens adds it back
    segments = [EXACT_MARK]
    for i, chunk in enumerate(rendered.split(INSTRUCTION_MARK)):
        if i:
            segments.append("{{ instruction }}")
        segments.append("{{ input }}".join(_raw(p) for p in chunk.split(INPUT_MARK)))
    return "".join(segments)


def _raw(text: str) -> str:
    return "{% raw %}" + text + "{% endraw %}" if text else ""


def _check_chat_layout(tokenizer: Any, layout: PromptLayout, records: Sequence[Record], system_role: bool) -> None:
    for index, record in enumerate(records):
        expected = tokenizer.apply_chat_template(
            chat_messages(record.instruction, record.input, system_role=system_role),
            tokenize=True,
            add_generation_prompt=True,
        )
        expected_ids = with_added_bos(tokenizer, _ids(expected))
        got = rendered_prompt_ids(tokenizer, layout, record)
        if got != expected_ids:
            raise KochallengeError(
                f"--prompt-mode chat-template: record {index}: the base chat template does not render the record as "
                "plain text in a fixed frame (it changes the content or depends on more than the messages), so serving "
                "could not send what training saw; use --prompt-mode layout"
            )


def chat_completion_ids(
    tokenizer: Any, record: Record, system_role: bool, prompt_length: int, stops: set[int]
) -> list[int]:
    """The assistant turn as the chat template writes it, up to and including its first stop token."""
    messages = [
        *chat_messages(record.instruction, record.input, system_role=system_role),
        {"role": "assistant", "content": record.output},
    ]
    full = tokenizer.apply_chat_template(messages, tokenize=True)
    ids = with_added_bos(tokenizer, _ids(full))[prompt_length:]
    for position, token in enumerate(ids):
        if token in stops:
            return ids[: position + 1]
    return [*ids, min(stops)]


def with_added_bos(tokenizer: Any, ids: list[int]) -> list[int]:
    """The template's ids as the one tokenization path gives them: a template that writes no bos still gets the
    bos the tokenizer adds to every text, in training and in serving alike."""
    bos = tokenizer.bos_token_id
    return [bos, *ids] if adds_bos(tokenizer) and ids[:1] != [bos] else ids


def _ids(encoded: Any) -> list[int]:
    """``apply_chat_template(tokenize=True)`` returns a list in some versions and a BatchEncoding in others."""
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def tokenize_chat_record(
    tokenizer: Any, layout: PromptLayout, record: Record, system_role: bool, stops: set[int], index: int = 0
) -> TokenizedExample:
    """Chat-template mode: the derived layout's prompt ids, then the template's assistant turn to its stop."""
    prompt_ids = rendered_prompt_ids(tokenizer, layout, record)
    completion_ids = chat_completion_ids(tokenizer, record, system_role, len(prompt_ids), stops)
    return _example(index, prompt_ids, completion_ids)


def audit_lengths(examples: Sequence[TokenizedExample], max_length: int) -> LengthAudit:
    """Split examples into those that fit whole and those a ``max_length`` cut would damage."""
    kept = [e for e in examples if e.length <= max_length]
    truncated = [e for e in examples if e.length > max_length]
    return LengthAudit(max_length=max_length, kept=kept, truncated=truncated)


def split_validation(count: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    """Shuffle indices with ``seed`` and hold out ``share`` of them (at least one) for validation."""
    if count < 2:
        raise KochallengeError(f"{count} usable records; training needs at least 2 (one for validation)")
    order = list(range(count))
    random.Random(seed).shuffle(order)
    held_out = min(count - 1, max(1, round(count * share)))
    return sorted(order[held_out:]), sorted(order[:held_out])


def grouped_validation(
    path: Path, records: Sequence[Record], kept: Sequence[int], share: float, seed: int
) -> tuple[list[int], list[int]] | None:
    """Positions in ``kept`` for training and validation, holding out whole pool items as ``split --group-by item``
    does (one recommend sentence, user message or instruction phrasing never on both sides), so early stopping
    measures generalisation; None when the data has too few items to hold any out."""
    from ...split import Source, group_keys, read_source, stratified_group_split

    source: Source = read_source(path)
    if len(source.records) != len(records):
        return None
    keys, _ = group_keys(source, "item")
    tasks = [source.tasks[i] for i in kept]
    train, validation, _ = stratified_group_split(tasks, [keys[i] for i in kept], share, seed)
    return (train, validation) if train and validation else None


def trl_rows(examples: Sequence[TokenizedExample]) -> list[dict[str, list[int]]]:
    """Rows for TRL's SFTTrainer: pre-tokenized, with the completion mask it turns into labels."""
    return [
        {"input_ids": e.input_ids, "completion_mask": [0] * e.prompt_length + [1] * e.completion_length}
        for e in examples
    ]
