"""``validate`` for any alpaca-style dataset: stream it, check every record, report, optionally fix.

A file is read one record at a time (a JSON array is split into its elements without being loaded
whole), records are checked in batches, by worker processes when ``workers > 1``, and one process
takes the results in file order: it compares each record with every earlier one in the compact
duplicate index, counts, and streams findings and corrected records out. The order-dependent work
happens only there, so the output is the same bytes for any number of workers.
"""

from __future__ import annotations

import codecs
import os
import re
import sys
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

import numpy as np
import orjson

from .check_workers import check_pool, worker_checker
from .checks.codes import CODES, INFO
from .checks.dedup import DEFAULT_THRESHOLD, DuplicateIndex
from .checks.index_store import SortedRuns
from .checks.minhash import FingerprintBatch, exact_key, fingerprint_keys, joined_key, normalized
from .checks.record import RecordChecker, check_fields, infer_task
from .checks.spacing import SpacingChecker
from .errors import FormatError, InputFileError, KochallengeError
from .formats import format_recommendation, parse_recommendation
from .models import Finding, Task
from .pools import default_pools_dir
from .progress import SILENT, Reporter
from .spacing_allowlist import load_allowlist
from .text import FEEDBACK_LIMIT, trim

CHECK_BATCH = 1000  # records a worker checks at once: Kiwi sees all their new words in one call
READ_CHUNK = 1 << 20
IN_FLIGHT_PER_WORKER = 2  # batches queued ahead for each worker; bounds memory whatever the file size
FINDINGS_SHOWN = 50
_HASH_63 = (1 << 63) - 1  # output hashes are stored as int64


@dataclass(frozen=True)
class ValidateOptions:
    task: Task | None = None
    expected_challenges: int = 3
    threshold: float = DEFAULT_THRESHOLD
    check_spacing: bool = True
    feedback_limit: int = FEEDBACK_LIMIT
    fix: bool = False  # also prepare a corrected copy of every record
    spacing_precheck: bool = True  # clear most texts without Kiwi's full check (checks/spacing.py)


@dataclass
class ValidationReport:
    records: int
    tasks: list[Task]
    findings: list[Finding]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, int]:
        return dict(sorted(Counter(f.code for f in self.findings).items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "findings": [f.model_dump(exclude_none=True) for f in self.findings],
            "summary": self.summary,
            "info": self.info,
        }


@dataclass
class ValidationSummary:
    """What a streamed validation leaves behind: counts, not the findings themselves."""

    records: int = 0
    summary: Counter[str] = field(default_factory=Counter)
    tasks: Counter[str] = field(default_factory=Counter)
    same_input_different_output: int = 0
    changes: Counter[str] = field(default_factory=Counter)
    spacing: Counter[str] = field(default_factory=Counter)  # what the spacing pre-check did, for benches

    @property
    def findings(self) -> int:
        return sum(self.summary.values())

    @property
    def info(self) -> dict[str, Any]:
        return {
            "tasks": dict(sorted(self.tasks.items())),
            "same_input_different_output": self.same_input_different_output,
        }

    def changes_line(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.changes.items())) or "no changes"


# ---------------------------------------------------------------------------------------------------------------
# Reading: (byte offset, raw JSON) for each record, never the whole file.

# A whole JSON string (escapes included), a lone quote (a string the buffer cuts off), or a bracket or comma.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|"|[\[\]{},]')
_WHITESPACE = b" \t\r\n"


def iter_raw(path: Path) -> Iterator[tuple[int, bytes]]:
    """Each record's byte offset and undecoded JSON, from a JSON array or a JSONL file."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise InputFileError(f"{path}: file not found") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror})") from exc
    with handle:
        head, start = _first_content(handle, path)
        if head[start : start + 1] == b"[":
            yield from _array_elements(handle, head, start, path)
        else:
            bom = 3 if head.startswith(b"\xef\xbb\xbf") else 0
            yield from _jsonl_lines(handle, head[bom:], offset=bom)


def read_dataset(path: Path) -> list[Any]:
    """A JSON array or JSONL of records; anything unusable is an InputFileError naming the line."""
    records: list[Any] = []
    for offset, raw in iter_raw(path):
        parsed = _parse(raw)
        if isinstance(parsed, _Unparsable):
            raise InputFileError(parsed.message(path, offset, _is_array(path)))
        records.append(parsed)
    return records


def _first_content(handle: BinaryIO, path: Path) -> tuple[bytes, int]:
    """The first chunk (more if it is all whitespace) and the offset of its first non-blank byte."""
    data = handle.read(READ_CHUNK)
    while len(data) < 3 and (more := handle.read(READ_CHUNK)):
        data += more  # enough to see a byte-order mark
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    while True:
        stripped = len(data) - len(data[start:].lstrip(_WHITESPACE))
        if stripped < len(data):
            return data, stripped
        more = handle.read(READ_CHUNK)
        if not more:
            raise InputFileError(f"{path}: the file is empty")
        data += more


def _jsonl_lines(handle: BinaryIO, head: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines split at ``\\n`` only (a JSON string may hold U+2028, which ``splitlines`` would cut)."""
    pending = b""
    for chunk in _chunks(handle, head):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.strip(_WHITESPACE):
                yield offset, line
            offset += len(line) + 1
    if pending.strip(_WHITESPACE):
        yield offset, pending


def _chunks(handle: BinaryIO, head: bytes) -> Iterator[bytes]:
    yield head
    while chunk := handle.read(READ_CHUNK):
        yield chunk


def _array_elements(handle: BinaryIO, head: bytes, start: int, path: Path) -> Iterator[tuple[int, bytes]]:
    """The top-level elements of a JSON array, found by skipping strings and counting brackets; each
    element is parsed later, on its own."""
    buffer, base = head, 0  # buffer[0] is at file offset base
    scan, element = start + 1, start + 1  # where scanning resumes; where the current element starts
    depth, elements = 1, 0
    while True:
        for token in _TOKEN.finditer(buffer, scan):
            char = buffer[token.start()]
            if char == 0x22:  # "
                if token.end() - token.start() == 1:
                    scan = token.start()  # a string the buffer cuts off: read on, then start it over
                    break
                continue
            if char == 0x5B or char == 0x7B:  # [ {
                depth += 1
            elif char == 0x5D or char == 0x7D:  # ] }
                depth -= 1
                if depth == 0:
                    if char != 0x5D:
                        raise _structure_error(path, base + token.start(), "'}' closes the array")
                    piece = buffer[element : token.start()]
                    if piece.strip(_WHITESPACE):
                        yield base + element, piece
                    elif elements:
                        raise _structure_error(path, base + token.start(), "a comma before ']'")
                    _expect_end(handle, buffer[token.end() :], path, base + token.end())
                    return
            elif depth == 1:  # a comma between elements
                piece = buffer[element : token.start()]
                if not piece.strip(_WHITESPACE):
                    raise _structure_error(path, base + token.start(), "an empty element before ','")
                yield base + element, piece
                elements += 1
                element = token.end()
        else:
            scan = len(buffer)
        more = handle.read(READ_CHUNK)
        if not more:
            raise _structure_error(path, base + len(buffer), "the array is not closed with ']'")
        # Keep only the current element (everything before it has been handed out).
        buffer, base, scan, element = buffer[element:] + more, base + element, scan - element, 0


def _expect_end(handle: BinaryIO, rest: bytes, path: Path, offset: int) -> None:
    while True:
        if rest.strip(_WHITESPACE):
            extra = offset + len(rest) - len(rest.lstrip(_WHITESPACE))
            raise _structure_error(path, extra, "text after the closing ']'")
        offset += len(rest)
        rest = handle.read(READ_CHUNK)
        if not rest:
            return


def _structure_error(path: Path, offset: int, what: str) -> InputFileError:
    line, column = _line_and_column(path, offset)
    return InputFileError(f"{path}:{line}:{column}: not valid JSON: {what}")


def _line_and_column(path: Path, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of a byte offset; reads the file again (errors only)."""
    line, line_start, done = 1, 0, 0
    with path.open("rb") as handle:
        while done < offset:
            chunk = handle.read(min(READ_CHUNK, offset - done))
            if not chunk:
                break
            newlines = chunk.count(b"\n")
            if newlines:
                line += newlines
                line_start = done + chunk.rfind(b"\n") + 1
            done += len(chunk)
        handle.seek(line_start)
        column = len(handle.read(offset - line_start).decode("utf-8", errors="replace")) + 1
    return line, column


def _is_array(path: Path) -> bool:
    with path.open("rb") as handle:
        head, start = _first_content(handle, path)
    return head[start : start + 1] == b"["


@dataclass(frozen=True)
class _Unparsable:
    """Why one record's bytes are not JSON; turned into a message with the file's line numbers."""

    reason: str
    line: int  # inside the record
    column: int
    utf8_error: tuple[int, str] | None  # (byte inside the record, reason)

    def message(self, path: Path, offset: int, array: bool) -> str:
        if self.utf8_error is not None:
            byte, reason = self.utf8_error
            return f"{path}: not UTF-8 (byte {offset + byte}: {reason})"
        line, column = _line_and_column(path, offset)
        if not array:
            return f"{path}:{line}: JSONL line is not valid JSON: {self.reason}"
        if self.line > 1:
            line, column = line + self.line - 1, self.column
        else:
            column += self.column - 1
        return f"{path}:{line}:{column}: not valid JSON: {self.reason}"


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
            utf8_error = None
        except UnicodeDecodeError as bad:
            utf8_error = (bad.start, bad.reason)
        return _Unparsable(exc.msg, exc.lineno, exc.colno, utf8_error)


# ---------------------------------------------------------------------------------------------------------------
# Checking: what can be judged from one record alone. Runs in workers; nothing here depends on order.


@dataclass
class CheckedBatch:
    """One batch's results, sent from a worker to the process that writes the report."""

    first: int  # index of the batch's first record
    findings: list[list[Finding]]
    tasks: list[Task]
    usable: list[int]  # positions in the batch of records with three string fields
    prints: FingerprintBatch  # for the usable records, in order
    pairs: np.ndarray  # (usable, 2) uint64: hashes of the normalized input and output
    fixed: list[tuple[bytes, list[str]]] | None  # each record as the corrected file will hold it, and what changed
    spacing: Counter[str] = field(default_factory=Counter)  # the spacing checker's work on this batch
    unparsable: tuple[int, _Unparsable] | None = None  # the first record that is not JSON, if any

    def __len__(self) -> int:
        return len(self.findings)


class BatchChecker:
    """Every check that needs only the record itself; one per process, so its caches stay warm."""

    def __init__(self, options: ValidateOptions, spacing: SpacingChecker | None = None) -> None:
        self.options = options
        # Kiwi's known false alarms are facts about Kiwi, not about one dataset: use the shipped list.
        self.spacing = spacing or SpacingChecker(load_allowlist(default_pools_dir()), precheck=options.spacing_precheck)
        self.records = RecordChecker(
            expected_challenges=options.expected_challenges,
            feedback_limit=options.feedback_limit,
            spacing=self.spacing,
            check_spacing=options.check_spacing,
        )

    def check_raw(self, first: int, raws: Sequence[bytes]) -> CheckedBatch:
        records: list[Any] = []
        for position, raw in enumerate(raws):
            parsed = _parse(raw)
            if isinstance(parsed, _Unparsable):
                batch = self.check(first, records)
                batch.unparsable = (position, parsed)
                return batch
            records.append(parsed)
        return self.check(first, records)

    def check(self, first: int, records: Sequence[Any]) -> CheckedBatch:
        given = self.options.task
        tasks: list[Task] = [given or (infer_task(r) if isinstance(r, dict) else "free_text") for r in records]
        items = [(first + k, record, tasks[k]) for k, record in enumerate(records)]
        before = Counter(self.spacing.stats)
        findings = self.records.check_many(items)
        spacing = self.spacing.stats - before
        usable = [k for k, record in enumerate(records) if not check_fields(0, record)]
        inputs = [normalized(records[k]["input"]) for k in usable]
        outputs = [normalized(records[k]["output"]) for k in usable]
        pairs = np.array(
            [[exact_key(i), exact_key(o)] for i, o in zip(inputs, outputs, strict=True)], dtype=np.uint64
        ).reshape(-1, 2)
        # Duplicates are judged on input and output together, as one text.
        prints = fingerprint_keys([joined_key(i, o) for i, o in zip(inputs, outputs, strict=True)])
        fixed = None
        if self.options.fix:
            fixed = [
                self._fixed(record, task, {f.code for f in found}, k in usable)
                for k, (record, task, found) in enumerate(zip(records, tasks, findings, strict=True))
            ]
        return CheckedBatch(first, findings, tasks, usable, prints, pairs, fixed, spacing)

    def _fixed(self, record: Any, task: Task, codes: set[str], usable: bool) -> tuple[bytes, list[str]]:
        if not usable:
            # Unfixable records are kept as they were (a later validate shows them).
            return _array_item(record), ["kept_unfixable"]
        output = record["output"]
        if task == "feedback":
            output, what = fix_feedback(output, codes, self.spacing)
        else:
            output, what = fix_recommendation(output, codes, self.spacing)
        return _array_item({"instruction": record["instruction"], "input": record["input"], "output": output}), what


def _array_item(value: Any) -> bytes:
    """``value`` as it appears inside an OPT_INDENT_2 array: indented two more spaces."""
    return b"  " + orjson.dumps(value, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n  ")


def fix_feedback(output: str, codes: set[str], spacing: SpacingChecker) -> tuple[str, list[str]]:
    what = []
    if "spacing" in codes:
        output = spacing.check(output).fixed()
        what.append("fixed_spacing")
    if "feedback_too_long" in codes or len(output) > FEEDBACK_LIMIT:
        trimmed = trim(output)
        if trimmed != output:
            output = trimmed
            what.append("trimmed")
    return output, what


def fix_recommendation(output: str, codes: set[str], spacing: SpacingChecker) -> tuple[str, list[str]]:
    what = []
    text = output
    if "json_output" in codes:
        text = _unwrap_json(text)
        what.append("converted_json")
    if codes & {"blank_line", "trailing_whitespace"}:
        text = "\n".join(line.strip() for line in text.split("\n") if line.strip())
        what.append("cleaned_lines")
    try:
        recommendation = parse_recommendation(text)
    except FormatError:
        return (text if what else output), what
    if "spacing" in codes:
        parts = recommendation.model_dump()
        parts["recommend"] = spacing.check(parts["recommend"]).fixed()
        for challenge in parts["challenges"]:
            challenge["title"] = spacing.check(challenge["title"]).fixed()
            challenge["description"] = spacing.check(challenge["description"]).fixed()
        recommendation = type(recommendation).model_validate(parts)
        what.append("fixed_spacing")
    return format_recommendation(recommendation), what


def _unwrap_json(text: str) -> str:
    """``{"text": "..."}`` wrappers hold the real answer inside; JSON objects are parsed as is."""
    try:
        data = orjson.loads(text.strip())
    except orjson.JSONDecodeError:
        return text
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        return str(data["text"])
    return text


# ---------------------------------------------------------------------------------------------------------------
# Workers: each process keeps one BatchChecker; batches come back in the order they were sent.


def _check_in_worker(first: int, raws: list[bytes]) -> CheckedBatch:
    checker: BatchChecker = worker_checker()
    return checker.check_raw(first, raws)


def _raw_batches(raws: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, list[int], list[bytes]]]:
    """(index of the first record, byte offsets, raw records) per CHECK_BATCH records."""
    first, offsets, batch = 0, [], []
    for offset, raw in raws:
        offsets.append(offset)
        batch.append(raw)
        if len(batch) == CHECK_BATCH:
            yield first, offsets, batch
            first, offsets, batch = first + len(batch), [], []
    if batch:
        yield first, offsets, batch


def _checked_batches(
    raws: Iterable[tuple[int, bytes]], options: ValidateOptions, workers: int
) -> Iterator[tuple[list[int], CheckedBatch]]:
    if workers < 1:
        raise KochallengeError(f"--workers must be at least 1, got {workers}")
    if workers == 1:
        checker = BatchChecker(options)
        for first, offsets, batch in _raw_batches(raws):
            yield offsets, checker.check_raw(first, batch)
        return
    with check_pool(workers, BatchChecker, options) as pool:
        queued: deque[tuple[list[int], Any]] = deque()
        for first, offsets, batch in _raw_batches(raws):
            queued.append((offsets, pool.apply_async(_check_in_worker, (first, batch))))
            if len(queued) > IN_FLIGHT_PER_WORKER * workers:
                done_offsets, result = queued.popleft()
                yield done_offsets, result.get()
        while queued:
            done_offsets, result = queued.popleft()
            yield done_offsets, result.get()


# ---------------------------------------------------------------------------------------------------------------
# The ordered part: duplicates, counts, findings and corrected records go out in file order.


class _Tally:
    def __init__(
        self,
        threshold: float,
        on_finding: Callable[[Finding], None],
        fixed: IO[bytes] | None,
        keep_tasks: bool = False,  # every record's task, for the in-memory report (not for streams)
    ) -> None:
        self.duplicates = DuplicateIndex(threshold)
        self.outputs_by_input = SortedRuns()  # input hash -> the first output hash seen with it
        self.varied_inputs: set[int] = set()
        self.on_finding = on_finding
        self.fixed = fixed
        self.fixed_written = 0
        self.result = ValidationSummary()
        self.keep_tasks = keep_tasks
        self.all_tasks: list[Task] = []

    def take(self, batch: CheckedBatch) -> None:
        hits = self.duplicates.add_batch(batch.prints, [batch.first + k for k in batch.usable])
        dropped = set()
        findings = batch.findings
        for k, hit in zip(batch.usable, hits, strict=True):
            if hit is not None:
                kind, other, similarity = hit
                message = (
                    f"the same as record {other}"
                    if kind == "duplicate"
                    else f"nearly the same as record {other} (similarity {similarity:.2f})"
                )
                findings[k] = [*findings[k], Finding(index=batch.first + k, field="output", code=kind, message=message)]
                dropped.add(k)
        for record_findings in findings:
            for finding in sorted(record_findings, key=lambda f: (f.field, f.code)):
                self.result.summary[finding.code] += 1
                self.on_finding(finding)
        self.result.records += len(batch)
        self.result.tasks.update(batch.tasks)
        self.result.spacing.update(batch.spacing)
        if self.keep_tasks:
            self.all_tasks += batch.tasks
        self._count_varied_inputs(batch.pairs)
        if self.fixed is not None and batch.fixed is not None:
            self._write_fixed(batch.fixed, dropped)

    def _count_varied_inputs(self, pairs: np.ndarray) -> None:
        """Inputs that appear with more than one output: normal for recommendations, worth knowing."""
        inputs, outputs = pairs[:, 0], (pairs[:, 1] & np.uint64(_HASH_63)).astype(np.int64)
        known = self.outputs_by_input.in_runs(inputs)
        for k, (key, output) in enumerate(zip(inputs.tolist(), outputs.tolist(), strict=True)):
            first = known.get(k) or self.outputs_by_input.pending(key)
            if not first:
                self.outputs_by_input.add([key], output)
            elif first[0] != output:
                self.varied_inputs.add(key)
        self.outputs_by_input.settle()
        self.result.same_input_different_output = len(self.varied_inputs)

    def _write_fixed(self, fixed: list[tuple[bytes, list[str]]], dropped: set[int]) -> None:
        assert self.fixed is not None
        for k, (item, what) in enumerate(fixed):
            if k in dropped:
                self.result.changes["dropped_duplicate"] += 1
                continue
            self.result.changes.update(what)
            self.fixed.write((b",\n" if self.fixed_written else b"[\n") + item)
            self.fixed_written += 1

    def close_fixed(self) -> None:
        if self.fixed is not None:
            self.fixed.write(b"\n]\n" if self.fixed_written else b"[]\n")


def validate_records(
    records: Sequence[Any],
    task: Task | None = None,
    expected_challenges: int = 3,
    threshold: float = DEFAULT_THRESHOLD,
    check_spacing: bool = True,
    feedback_limit: int = FEEDBACK_LIMIT,
    spacing: SpacingChecker | None = None,
    reporter: Reporter = SILENT,
) -> ValidationReport:
    """Every record-level check, then exact and near duplicates over input + output."""
    options = ValidateOptions(task, expected_challenges, threshold, check_spacing, feedback_limit)
    checker = BatchChecker(options, spacing)
    findings: list[Finding] = []
    tally = _Tally(threshold, findings.append, None, keep_tasks=True)
    with reporter.step("validate", total=len(records)) as step:
        for first in range(0, len(records), CHECK_BATCH):
            batch = records[first : first + CHECK_BATCH]
            tally.take(checker.check(first, batch))
            step.advance(len(batch))
    return ValidationReport(records=len(records), tasks=tally.all_tasks, findings=findings, info=tally.result.info)


def validate_file(
    path: Path,
    options: ValidateOptions,
    on_finding: Callable[[Finding], None],
    fixed_out: Path | None = None,
    workers: int = 1,
    reporter: Reporter = SILENT,
) -> ValidationSummary:
    """Validate a file of any size in flat memory; findings go to ``on_finding`` in file order.

    With ``fixed_out`` a corrected copy is written there atomically (duplicates dropped, the rest fixed
    where a fix is safe).
    """
    if fixed_out is not None and not options.fix:
        options = replace(options, fix=True)
    size = path.stat().st_size if path.exists() else None
    with _AtomicOutput(fixed_out) as fixed:
        tally = _Tally(options.threshold, on_finding, fixed)
        with reporter.step("validate", total=size, unit="bytes") as step:
            done = 0
            for offsets, batch in _checked_batches(iter_raw(path), options, workers):
                tally.take(batch)
                if batch.unparsable is not None:
                    position, problem = batch.unparsable
                    raise InputFileError(problem.message(path, offsets[position], _is_array(path)))
                step.advance(offsets[-1] - done)
                done = offsets[-1]
            step.advance((size or done) - done)
        tally.close_fixed()
    return tally.result


class _AtomicOutput:
    """A temporary file beside ``path`` that replaces it only when the block ends without an error."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.temp_name: str | None = None
        self.handle: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes] | None:
        if self.path is None:
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, self.temp_name = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
            )
        except OSError as exc:
            raise KochallengeError(f"{self.path}: cannot write here ({exc.strerror})") from exc
        self.handle = os.fdopen(descriptor, "wb", buffering=1 << 20)
        return self.handle

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if self.handle is None or self.path is None or self.temp_name is None:
            return
        try:
            if kind is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
            self.handle.close()
            if kind is None:
                os.replace(self.temp_name, self.path)
        finally:
            if kind is not None:
                Path(self.temp_name).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------------
# The report a person reads: the first findings and the counts, or every finding as JSON.


class ReportWriter:
    """Receives findings as they are made; keeps the first few, spools the JSON form to a temporary file."""

    def __init__(self, as_json: bool, limit: int = FINDINGS_SHOWN) -> None:
        self.as_json = as_json
        self.limit = limit
        self.first: list[Finding] = []
        self.count = 0
        # Open until finish() copies it out; small reports never touch the disk.
        self._spool: IO[bytes] | None = (
            tempfile.SpooledTemporaryFile(max_size=16 << 20) if as_json else None  # noqa: SIM115
        )

    def __call__(self, finding: Finding) -> None:
        if len(self.first) < self.limit:
            self.first.append(finding)
        if self._spool is not None:
            item = b"    " + orjson.dumps(finding.model_dump(exclude_none=True), option=orjson.OPT_INDENT_2).replace(
                b"\n", b"\n    "
            )
            self._spool.write((b",\n" if self.count else b"") + item)
        self.count += 1

    def finish(self, source: Path, result: ValidationSummary, out: TextIO | None = None) -> None:
        out = out or sys.stdout
        if self._spool is None:
            self._print_text(source, result, out)
            return
        # Byte for byte what orjson writes for the whole report with OPT_INDENT_2.
        marker = "\x00findings\x00"
        frame = {
            "records": result.records,
            "findings": [marker] if self.count else [],
            "summary": dict(sorted(result.summary.items())),
            "info": result.info,
        }
        text = orjson.dumps(frame, option=orjson.OPT_INDENT_2).decode()
        if not self.count:
            out.write(text + "\n")
            return
        head, tail = text.split('    "\\u0000findings\\u0000"')
        out.write(head)
        self._spool.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()  # a chunk may end inside a character
        while chunk := self._spool.read(READ_CHUNK):
            out.write(decoder.decode(chunk))
        out.write(decoder.decode(b"", final=True) + tail + "\n")
        self._spool.close()

    def _print_text(self, source: Path, result: ValidationSummary, out: TextIO) -> None:
        print(f"{source}: {result.records} records, {self.count} findings", file=out)
        for finding in self.first:
            line = f"  #{finding.index} {finding.field} {finding.code}: {finding.message}"
            if finding.suggestion:
                line += f"\n      suggestion: {finding.suggestion}"
            print(line, file=out)
        if self.count > self.limit:
            print(f"  ... {self.count - self.limit} more (use --json for all)", file=out)
        for code, count in sorted(result.summary.items()):
            print(f"  {code:<22} {count:>6}  {CODES.get(code, '')}", file=out)
        tasks = ", ".join(f"{task} {count}" for task, count in sorted(result.tasks.items())) or "none"
        print(f"  tasks: {tasks}  ({INFO['tasks']})", file=out)
        varied = "same_input_different_output"
        print(f"  {varied}: {result.same_input_different_output}  ({INFO[varied]})", file=out)
