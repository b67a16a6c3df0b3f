"""The newline recommendation format as a regular expression, for decoding that cannot leave it.

vLLM (0.12 and later, so the pinned 0.33) takes ``{"structured_outputs": {"regex": ...}}`` on
``/v1/completions`` and masks every token that would leave the pattern; the old ``guided_regex``
field is gone. The pattern is the dataset's own contract: one recommend sentence, then exactly
``expected`` lines of ``title: description``, each part drawn from the characters the Korean-only
policy allows for it (checks/korean.py), never starting or ending with a space. It is the format
the model was trained on, so unlike the JSON mode it does not pull the model off its distribution.

Characters are written literally (no ``\\u`` escapes) because regex dialects differ on escapes and
agree on literal characters; the pattern compiles with Python's ``re`` as well, which is how the
tests check it against every record a build writes.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..checks.korean import DEFAULT_POLICY, FieldPolicy

HANGUL = "가-힣"
# Emoji blocks the recommend sentences use (☀ ☔ 🌱 💚 ...), with the variation selector and joiner that
# complete them; the policy's own check still runs on every line after decoding.
EMOJI = "☀-➿🌀-🫿\ufe0f\u200d"


def _characters(policy: FieldPolicy) -> str:
    """The inside of a character class for one field; ``:`` is in no policy, so a title cannot swallow it."""
    extra = "0-9" if policy.digits else ""
    punctuation = "".join("\\" + c if c in "]\\^-" else c for c in policy.punctuation)
    emoji = EMOJI if policy.emoji else ""
    return f"{HANGUL}{extra}{punctuation}{emoji}"


def _field(policy: FieldPolicy) -> str:
    """One or more allowed characters, spaces only inside."""
    chars = _characters(policy)
    return f"[{chars}](?:[{chars} ]*[{chars}])?"


def recommendation_regex(expected_challenges: int, policy: Mapping[str, FieldPolicy] = DEFAULT_POLICY) -> str:
    """``recommend\\n(title: description\\n){expected-1}title: description`` over the policy's characters."""
    line = f"{_field(policy['challenge_title'])}: {_field(policy['challenge_description'])}"
    return _field(policy["recommend"]) + f"(?:\n{line}){{{expected_challenges}}}"
