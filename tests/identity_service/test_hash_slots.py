from __future__ import annotations

import pytest

from identity_service import Scrypt
from identity_service._hash_slots import HashSlots, NoHashSlot

FAST = Scrypt(n=2**10)


def test_a_slot_beyond_the_limit_is_refused_after_the_wait_and_freed_ones_are_reused() -> None:
    slots = HashSlots(FAST, limit=2, wait=0.01)
    first, second = slots.take(), slots.take()
    with pytest.raises(NoHashSlot) as refused:
        slots.take()
    assert refused.value.retry_after == 1
    with first as hasher:
        assert hasher is FAST
    with slots.take(), second, pytest.raises(NoHashSlot):
        slots.take()


def test_a_slot_is_freed_when_its_block_raises() -> None:
    slots = HashSlots(FAST, limit=1, wait=0)
    with pytest.raises(RuntimeError), slots.take():
        raise RuntimeError("a request failed while hashing")
    with slots.take() as hasher:
        assert hasher.verify("pw", hasher.hash("pw"))


def test_the_refusal_asks_to_retry_after_about_the_wait() -> None:
    assert NoHashSlot(0).retry_after == 1
    assert NoHashSlot(2.5).retry_after == 3


def test_needs_rehash_takes_no_slot() -> None:
    slots = HashSlots(FAST, limit=1, wait=0)
    with slots.take():
        assert slots.needs_rehash(Scrypt(n=2**11).hash("pw"))
        assert not slots.needs_rehash(FAST.hash("pw"))


@pytest.mark.parametrize(
    ("limit", "wait"), [(0, 1.0), (1, -1.0), (1, float("inf")), (1, float("nan"))]
)
def test_no_slots_or_an_unbounded_wait_is_refused(limit: int, wait: float) -> None:
    with pytest.raises(ValueError, match="limit"):
        HashSlots(FAST, limit=limit, wait=wait)
