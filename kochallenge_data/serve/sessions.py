"""Chat sessions: the last few turns and the current category, bounded so memory stays flat.

A session is created by its first request and refreshed by each one. The store is an LRU of at
most ``max_sessions`` entries; sessions idle longer than ``max_age_s`` are dropped on the next
access, and each keeps at most ``max_turns`` turns, so a flood of new session ids cannot grow the
server's memory. Turns are kept for the service's own use (what was recommended); they are not
put into the prompt, because the model was trained on single-turn prompts (see prompt.py).

The store is used from the event loop only; the lock guards direct use from other threads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_MAX_SESSIONS = 10_000
DEFAULT_MAX_AGE_S = 30 * 60.0
DEFAULT_MAX_TURNS = 3


@dataclass(frozen=True)
class Turn:
    """One answered request: what was asked and the challenge titles given."""

    kind: str
    text: str
    titles: tuple[str, ...]


@dataclass
class Session:
    session_id: str
    last_seen: float
    category: str | None = None
    turns: deque[Turn] = field(default_factory=lambda: deque(maxlen=DEFAULT_MAX_TURNS))


class SessionStore:
    """At most ``max_sessions`` sessions, none older than ``max_age_s``, each with ``max_turns`` turns."""

    def __init__(
        self,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        max_turns: int = DEFAULT_MAX_TURNS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sessions < 1 or max_age_s <= 0 or max_turns < 1:
            raise ValueError("max_sessions and max_turns must be >= 1 and max_age_s > 0")
        self.max_sessions = max_sessions
        self.max_age_s = max_age_s
        self.max_turns = max_turns
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def touch(self, session_id: str) -> Session:
        """The session for ``session_id``, created or refreshed, after dropping expired and surplus ones."""
        with self._lock:
            now = self._clock()
            self._drop_expired(now)
            session = self._sessions.pop(session_id, None)
            if session is None:
                session = Session(session_id, now, turns=deque(maxlen=self.max_turns))
            session.last_seen = now
            self._sessions[session_id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
                self.evicted += 1
            return session

    def peek(self, session_id: str) -> Session | None:
        """The session if it is alive, without refreshing it (for tests and diagnostics)."""
        with self._lock:
            self._drop_expired(self._clock())
            return self._sessions.get(session_id)

    def add_turn(self, session_id: str, turn: Turn) -> None:
        self.touch(session_id).turns.append(turn)

    def _drop_expired(self, now: float) -> None:
        # Sessions are kept in last-seen order, so the expired ones are at the front.
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.last_seen <= self.max_age_s:
                return
            self._sessions.popitem(last=False)
            self.evicted += 1
