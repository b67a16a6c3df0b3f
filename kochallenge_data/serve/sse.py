"""Server-sent events both ways, and streamed text that never shows half a character.

Text reaches the server in pieces that can end anywhere: network reads cut a 3-byte Hangul
syllable, byte-level tokens cut it too, and a piece can end between an emoji and its skin tone or
between a syllable and a trailing jamo. Three layers keep every emitted piece whole:

- :class:`Utf8Decoder` turns network bytes into text, holding an incomplete sequence until the
  next read (strict: bytes that are not UTF-8 at all are an error, never U+FFFD);
- :class:`TokenDecoder` turns generated token ids into text, holding tokens that end inside a
  character (decoding them alone gives U+FFFD);
- :class:`TextStream` holds back the last grapheme cluster (it may still grow) and drops U+FFFD
  that a model produced from invalid byte tokens, then emits NFC text.

The SSE writer and parser here are shared by the API (writing) and the vLLM client (reading).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from ..errors import KochallengeError
from ..text import cluster_boundaries, nfc

REPLACEMENT = "\ufffd"


class StreamDecodeError(KochallengeError):
    """Bytes from a backend that are not UTF-8."""


class Utf8Decoder:
    """Incremental, strict UTF-8: an incomplete sequence at the end of a read waits for the next one."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")

    def feed(self, data: bytes) -> str:
        try:
            text: str = self._decoder.decode(data, final=False)
        except UnicodeDecodeError as exc:
            raise StreamDecodeError(f"the backend sent bytes that are not UTF-8 ({exc.reason})") from exc
        return text

    def finish(self) -> str:
        """The end of the stream: a sequence still incomplete here was cut by the sender."""
        try:
            text: str = self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise StreamDecodeError("the backend's stream ended inside a UTF-8 character") from exc
        return text


@dataclass
class TokenDecoder:
    """Token ids in, settled text out (the prefix/read offset scheme of text-generation-inference).

    ``decode`` maps ids to text (e.g. ``tokenizer.decode(ids, skip_special_tokens=True)``). Text is
    released only when the decoded window does not end in U+FFFD, i.e. no character is cut.
    """

    decode: Callable[[Sequence[int]], str]
    ids: list[int] = field(default_factory=list)
    prefix_offset: int = 0
    read_offset: int = 0

    def push(self, new_ids: Sequence[int]) -> str:
        self.ids.extend(new_ids)
        prefix_text = self.decode(self.ids[self.prefix_offset : self.read_offset])
        window_text = self.decode(self.ids[self.prefix_offset :])
        if len(window_text) > len(prefix_text) and not window_text.endswith(REPLACEMENT):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return window_text[len(prefix_text) :]
        return ""

    def finish(self) -> str:
        """What is left when generation ends; a character still cut here is dropped by TextStream."""
        prefix_text = self.decode(self.ids[self.prefix_offset : self.read_offset])
        window_text = self.decode(self.ids[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.ids)
        return window_text[len(prefix_text) :]


@dataclass
class TextStream:
    """Pieces of text in, whole grapheme clusters out; ``text`` is everything emitted so far."""

    pending: str = ""
    text: str = ""
    dropped: int = 0

    def push(self, piece: str) -> str:
        self.pending += self._clean(piece)
        boundaries = cluster_boundaries(self.pending)
        # The last cluster may still grow (a jamo, a skin tone, a ZWJ sequence): keep it back.
        cut = boundaries[-2] if len(boundaries) > 1 else 0
        ready, self.pending = self.pending[:cut], self.pending[cut:]
        return self._emit(ready)

    def finish(self, last_piece: str = "") -> str:
        """Everything still held, plus ``last_piece`` (e.g. what TokenDecoder.finish returned)."""
        ready, self.pending = self.pending + self._clean(last_piece), ""
        return self._emit(ready)

    def _clean(self, piece: str) -> str:
        self.dropped += piece.count(REPLACEMENT)
        return piece.replace(REPLACEMENT, "")

    def _emit(self, ready: str) -> str:
        ready = nfc(ready)
        self.text += ready
        return ready


# --------------------------------------------------------------------------------------------
# writing events


def format_event(event: str, data: object) -> bytes:
    """One SSE event whose data is a JSON value on a single line (JSON escapes every newline)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# --------------------------------------------------------------------------------------------
# reading events


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str


@dataclass
class SseParser:
    """The SSE wire format, fed text of any chunking (a CR LF may arrive split in two)."""

    buffer: str = ""
    event: str = ""
    data: list[str] = field(default_factory=list)

    def feed(self, text: str) -> list[SseEvent]:
        self.buffer += text
        events: list[SseEvent] = []
        while True:
            line, found = self._next_line()
            if not found:
                return events
            if line == "":
                if self.data:
                    events.append(SseEvent(self.event or "message", "\n".join(self.data)))
                self.event, self.data = "", []
                continue
            if line.startswith(":"):
                continue  # a comment (keep-alive)
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                self.event = value
            elif name == "data":
                self.data.append(value)

    def _next_line(self) -> tuple[str, bool]:
        for index, char in enumerate(self.buffer):
            if char == "\n" or char == "\r":
                if char == "\r" and index + 1 == len(self.buffer):
                    return "", False  # a LF may follow in the next chunk
                end = index + 2 if self.buffer[index : index + 2] == "\r\n" else index + 1
                line, self.buffer = self.buffer[:index], self.buffer[end:]
                return line, True
        return "", False
