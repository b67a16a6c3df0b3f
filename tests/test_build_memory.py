"""The build's compact bookkeeping behaves exactly like the plain Python structures it replaces."""

from __future__ import annotations

from collections import deque

from hypothesis import given
from hypothesis import strategies as st

from kochallenge_data.build_gate import SlotQueue
from kochallenge_data.digest_set import DigestSet

DIGESTS = st.integers(min_value=0, max_value=2**64 - 1)
# Low bits shared: the probe chains, not only the first slot, decide.
CLUSTERED = st.integers(min_value=0, max_value=2**20 - 1).map(lambda high: high << 44)  # below 2**64


@given(st.lists(st.one_of(DIGESTS, CLUSTERED, st.sampled_from([0, 1, 2**64 - 1])), max_size=3000), st.lists(DIGESTS))
def test_digest_set_answers_as_a_set_does(added: list[int], asked: list[int]) -> None:
    digests, reference = DigestSet(), set()
    for digest in added:
        assert (digest in digests) == (digest in reference)
        digests.add(digest)
        reference.add(digest)
    assert len(digests) == len(reference)
    assert all(digest in digests for digest in added)
    assert [d in digests for d in asked] == [d in reference for d in asked]


def test_digest_set_keeps_every_digest_across_growth() -> None:
    digests = DigestSet()
    for value in range(1, 20_000):
        digests.add(value * 0x9E3779B97F4A7C15 % 2**64)
    assert len(digests) == 19_999
    assert all(value * 0x9E3779B97F4A7C15 % 2**64 in digests for value in range(1, 20_000))
    assert 0 not in digests


@given(
    st.integers(min_value=0, max_value=2000),
    st.lists(st.tuples(st.integers(min_value=1, max_value=600), st.lists(st.booleans(), max_size=600)), max_size=12),
)
def test_slot_queue_takes_slots_in_the_order_a_deque_would(slots: int, rounds: list[tuple[int, list[bool]]]) -> None:
    """Each round takes a batch and sends some of it back (rejected): the same slots, in the same order."""
    queue, reference = SlotQueue(slots), deque(range(slots))
    for most, rejected in rounds:
        taken = queue.take(most)
        assert taken == [reference.popleft() for _ in range(min(most, len(reference)))]
        for slot, again in zip(taken, rejected, strict=False):
            if again:
                queue.append(slot)
                reference.append(slot)
        assert len(queue) == len(reference)
