"""The quality gate: each module checks one concern and returns findings with stable codes.

The same functions run on every record of a build and on any dataset given to ``validate``.
"""

from __future__ import annotations

from .codes import CODES
from .record import RecordChecker, check_fields, infer_task

__all__ = ["CODES", "RecordChecker", "check_fields", "infer_task"]
