"""User-facing errors: each says what is wrong, where, and how to fix it.

The CLI prints ``Error: <message>`` for these and exits 1 without a traceback; anything else is a
bug and keeps its trace.
"""

from __future__ import annotations


class KochallengeError(Exception):
    """A mistake the user can fix: a bad path, a bad pool file, an impossible request."""

    exit_code = 1


class PoolError(KochallengeError):
    """A pool file that cannot be read or does not validate."""


class TemplateError(KochallengeError):
    """A template with a syntax error or a variable the renderer does not provide."""


class CapacityError(KochallengeError):
    """The pools cannot produce as many distinct records as requested."""


class FormatError(KochallengeError):
    """Text that is not a valid recommendation in newline format or the JSON object form."""


class ConfigError(KochallengeError):
    """A build configuration that does not validate."""


class UsageError(ConfigError):
    """A command-line option with a value the command cannot use (exit 2, like argparse's own errors)."""

    exit_code = 2


class InputFileError(KochallengeError):
    """A dataset file given to a command that cannot be used at all (exit 2)."""

    exit_code = 2


def where(path: object, line: int | None = None) -> str:
    """Render a location as ``file:line`` (or just ``file``) for messages."""
    return f"{path}:{line}" if line is not None else f"{path}"
