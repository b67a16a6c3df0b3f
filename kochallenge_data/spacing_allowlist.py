"""The spacing allowlist: phrases Kiwi flags although they are correct, each with a reason."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import PoolError
from .safe_files import UnsafeFileError, read_user_text

ALLOWLIST_FILE = "spacing_allowlist.toml"


class AllowEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=2)
    reason: str = Field(min_length=5)


class AllowlistFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow: list[AllowEntry] = Field(default_factory=list)


def load_allowlist(pools_root: Path) -> tuple[str, ...]:
    """Allowlisted phrases from ``pools/spacing_allowlist.toml`` (none when the file is absent)."""
    path = pools_root / ALLOWLIST_FILE
    if not path.exists():
        return ()
    try:
        data = AllowlistFile.model_validate(tomllib.loads(read_user_text(path, inside=pools_root)))
    except UnsafeFileError as exc:
        raise PoolError(str(exc)) from None
    except (tomllib.TOMLDecodeError, ValidationError, UnicodeDecodeError) as exc:
        raise PoolError(f"{path}: every [[allow]] needs text and a reason: {exc}") from exc
    return tuple(entry.text for entry in data.allow)
