"""The finding codes, and the counts validate reports beside them, each with the few words a report prints
after it. The names are a public interface: tools and people filter on them, so never rename one."""

from __future__ import annotations

from collections.abc import Mapping

CODES: Mapping[str, str] = {
    "missing_field": "the record lacks instruction, input or output, or a field is not a string",
    "empty_field": "a field is empty or only whitespace",
    "not_newline_format": "a recommendation output does not parse as 'sentence, then title: description lines'",
    "json_output": "a recommendation output is a JSON object or a {'text': ...} wrapper, not newline format",
    "challenge_count": "a recommendation has a different number of challenges than expected",
    "blank_line": "a recommendation output has a blank line",
    "trailing_whitespace": "a line starts or ends with whitespace",
    "numbering": "a recommendation line starts with a number, bullet or markdown marker",
    "feedback_too_long": "feedback output is longer than the limit (code points after NFC)",
    "feedback_no_emoji": "feedback output has no emoji",
    "spacing": "words written together: a space is missing after a particle, an ending or a word (see suggestion)",
    "non_korean": "characters the field's Korean-only policy does not allow",
    "broken_text": "U+FFFD, a dangling zero-width joiner or variation selector, or an emoji cut inside its sequence",
    "escape_artifact": "a literal \\n or \\uXXXX escape left in the text",
    "duplicate": "the same record (after NFC and whitespace normalization) appears earlier",
    "near_duplicate": "a record is nearly the same as an earlier one (similarity at or above --threshold)",
    "bad_input": "the input does not have the shape its task needs (feedback JSON, or the base-info triple)",
}

# Facts about the whole file that validate counts beside the findings; none of them is a problem in a record.
INFO: Mapping[str, str] = {
    "tasks": "records per task, inferred from each input unless --task names it",
    "same_input_different_output": (
        "inputs that appear again with another output: normal for recommendations, worth a look for feedback"
    ),
}
