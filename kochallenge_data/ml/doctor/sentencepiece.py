"""A stdlib-only reader for the parts of a SentencePiece ``tokenizer.model`` the doctor checks.

No ``sentencepiece`` or ``protobuf`` dependency: the doctor must run where the serving stack is not installed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class SpModel:
    """What the doctor needs from a SentencePiece ``tokenizer.model``."""

    pieces: list[tuple[str, int]]
    byte_fallback: bool = False
    model_type: int = 1
    unk_id: int = 0
    normalizer_name: str = ""
    remove_extra_whitespaces: bool = True


def parse_sentencepiece(data: bytes) -> SpModel:
    """Parse the parts of a SentencePiece ModelProto the doctor needs, with the stdlib only.

    Raises ValueError on anything that is not well-formed protobuf.
    """
    model = SpModel(pieces=[])
    for number, wire, value in _proto_fields(data):
        if number == 1 and wire == 2:
            piece, kind = "", 1
            for n2, w2, v2 in _proto_fields(_as_bytes(value)):
                if n2 == 1 and w2 == 2:
                    piece = _as_bytes(v2).decode("utf-8", errors="replace")
                elif n2 == 3 and w2 == 0:
                    kind = _as_int(v2)
            model.pieces.append((piece, kind))
        elif number == 2 and wire == 2:
            for n2, w2, v2 in _proto_fields(_as_bytes(value)):
                if n2 == 35 and w2 == 0:
                    model.byte_fallback = bool(_as_int(v2))
                elif n2 == 3 and w2 == 0:
                    model.model_type = _as_int(v2)
                elif n2 == 40 and w2 == 0:
                    model.unk_id = _as_int(v2)
        elif number == 3 and wire == 2:
            for n2, w2, v2 in _proto_fields(_as_bytes(value)):
                if n2 == 1 and w2 == 2:
                    model.normalizer_name = _as_bytes(v2).decode("utf-8", errors="replace")
                elif n2 == 4 and w2 == 0:
                    model.remove_extra_whitespaces = bool(_as_int(v2))
    if not model.pieces:
        raise ValueError("no pieces")
    return model


def _as_bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited field")
    return value


def _as_int(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise ValueError("expected a varint field")
    return value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            yield number, wire, data[pos : pos + length]
            pos += length
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated field")


def looks_like_tiktoken(data: bytes) -> bool:
    first = data[:200].split(b"\n", 1)[0]
    return re.fullmatch(rb"[A-Za-z0-9+/=]+ \d+", first) is not None
