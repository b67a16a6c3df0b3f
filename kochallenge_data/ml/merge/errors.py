"""The error a refused or unverified merge raises (exit 1); unusable paths raise ``ModelDirError`` (exit 2)."""

from __future__ import annotations

from ...errors import KochallengeError


class MergeError(KochallengeError):
    """The merge was refused or did not verify; nothing was written to OUT."""
