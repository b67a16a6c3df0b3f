"""A recommendation read line by line as it streams, so only complete, valid lines reach the client.

The model writes the newline format: the recommend sentence, then one ``title: description`` line
per challenge. A line is released when its newline arrives, and the last line only when the model
stopped by itself (eos), because a length stop can cut a description anywhere and still leave a
line that parses. Every released line passes the dataset's own record checks (format, Korean-only
policy, broken text), run on the recommend sentence plus that line; the whole answer is checked
again at the end for the challenge count. Anything else ends the stream with an error code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..checks.record import RecordChecker
from ..errors import FormatError
from ..formats import parse_recommendation
from ..models import Challenge, Recommendation, Task

FORMAT_CODES = frozenset(
    {"not_newline_format", "blank_line", "trailing_whitespace", "numbering", "json_output", "empty_output"}
)
"""Record-check codes that mean the answer is not in the newline format at all."""


class AnswerError(Exception):
    """Why an answer cannot be delivered: a stable ``code`` for clients and a message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def finding_code(codes: list[str]) -> str:
    """The stream's error code for the record checks' findings."""
    if any(code == "challenge_count" for code in codes):
        return "wrong_count"
    if any(code in FORMAT_CODES for code in codes):
        return "unparsable"
    return "invalid_line"


@dataclass
class AnswerLines:
    """Feed text pieces; get back each challenge as soon as its line is complete and valid."""

    expected: int
    task: Task
    instruction: str
    input: str
    buffer: str = ""
    recommend: str | None = None
    challenges: list[Challenge] = field(default_factory=list)
    line_checker: RecordChecker = field(init=False)
    answer_checker: RecordChecker = field(init=False)

    def __post_init__(self) -> None:
        # Spacing (Kiwi) is a style matter, not a broken answer, and too slow to run per streamed line.
        self.line_checker = RecordChecker(check_spacing=False, expected_challenges=1)
        self.answer_checker = RecordChecker(check_spacing=False, expected_challenges=self.expected)

    def push(self, piece: str) -> list[Challenge]:
        """The challenges whose lines ``piece`` completed, each checked; raises AnswerError."""
        self.buffer += piece
        released = []
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            challenge = self._line(line)
            if challenge is not None:
                released.append(challenge)
        return released

    def finish(self, reason: str) -> tuple[list[Challenge], Recommendation]:
        """After the last piece: the final line (only after a real stop) and the whole answer, checked."""
        if reason == "length":
            raise AnswerError(
                "truncated", "the model reached the token limit before finishing its answer; nothing partial is sent"
            )
        if reason != "stop":
            raise AnswerError("no_eos", f"the answer ended without the model's stop token (finish: {reason})")
        last = self._line(self.buffer) if self.buffer.strip() else None
        self.buffer = ""
        if self.recommend is None:
            raise AnswerError("unparsable", "the model's answer is empty")
        answer = "\n".join([self.recommend, *(f"{c.title}: {c.description}" for c in self.challenges)])
        self._check(answer, self.answer_checker)
        return ([last] if last is not None else []), Recommendation(
            recommend=self.recommend, challenges=self.challenges
        )

    def _line(self, line: str) -> Challenge | None:
        if self.recommend is None:
            if not line.strip():
                return None  # blank lines before the answer starts are the model clearing its throat
            self.recommend = line
            return None
        if len(self.challenges) == self.expected:
            if not line.strip():
                return None  # trailing blank lines after the last challenge
            raise AnswerError("wrong_count", f"the model wrote more than {self.expected} challenges")
        partial = f"{self.recommend}\n{line}"
        self._check(partial, self.line_checker)
        try:
            challenge = parse_recommendation(partial, 1).challenges[0]
        except FormatError as exc:  # the checks above already name it; this is the parser's own word
            raise AnswerError("unparsable", str(exc)) from exc
        self.challenges.append(challenge)
        return challenge

    def _check(self, output: str, checker: RecordChecker) -> None:
        record = {"instruction": self.instruction, "input": self.input, "output": output}
        findings = checker.check(0, record, self.task)
        if findings:
            problems = "; ".join(f"{f.code}: {f.message}" for f in findings[:3])
            raise AnswerError(
                finding_code([f.code for f in findings]), f"the model's answer fails the checks: {problems}"
            )
