from __future__ import annotations

import pytest

from identity_service._throttle import LoginThrottle, TooManyFailures, client_key


class Tick:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(
    clock: Tick, *, per_user: int = 3, per_client: int = 10, keys: int = 100
) -> LoginThrottle:
    return LoginThrottle(
        per_user=per_user, per_client=per_client, window=60.0, max_keys=keys, clock=clock
    )


def test_logins_still_hashing_count_so_concurrent_guesses_cannot_pass_the_limit() -> None:
    # Each guess is charged before its scrypt: three in flight fill the allowance, and a
    # fourth arriving before any has failed is refused.
    clock = Tick()
    t = throttle(clock)
    for _ in range(3):
        t.charge("alice", "10.0.0.1")
    with pytest.raises(TooManyFailures):
        t.charge("alice", "10.0.0.2")


def test_retry_after_is_when_the_oldest_failure_leaves_the_window() -> None:
    clock = Tick()
    t = throttle(clock)
    for step in (0.0, 10.0, 20.0):
        clock.now += step
        t.charge("alice", "10.0.0.1")
    clock.now += 5.5
    with pytest.raises(TooManyFailures) as refused:
        t.charge("alice", "10.0.0.1")
    assert refused.value.retry_after == 25  # the first failure is 35.5 s old of 60
    clock.now += 24.5
    t.charge("alice", "10.0.0.1")


def test_a_refused_attempt_is_not_counted_so_it_does_not_extend_the_lock() -> None:
    clock = Tick()
    t = throttle(clock)
    for _ in range(3):
        t.charge("alice", "10.0.0.1")
    for _ in range(100):
        with pytest.raises(TooManyFailures):
            t.charge("alice", "10.0.0.1")
    clock.now += 60.0
    t.charge("alice", "10.0.0.1")


def test_a_refund_takes_back_only_that_logins_charge() -> None:
    clock = Tick()
    t = throttle(clock)
    t.charge("alice", "10.0.0.1")
    t.charge("alice", "10.0.0.1")
    clock.now += 1
    t.refund(t.charge("alice", "10.0.0.9"))
    t.charge("alice", "10.0.0.1")
    with pytest.raises(TooManyFailures):
        t.charge("alice", "10.0.0.9")


def test_the_client_limit_stops_spraying_one_password_over_many_usernames() -> None:
    clock = Tick()
    t = throttle(clock, per_client=4)
    for name in ("a", "b", "c", "d"):
        t.charge(name, "10.0.0.1")
    with pytest.raises(TooManyFailures):
        t.charge("e", "10.0.0.1")
    t.charge("e", "10.0.0.2")


def test_memory_stays_bounded_whatever_the_number_of_usernames_tried() -> None:
    clock = Tick()
    t = throttle(clock, keys=50)
    for i in range(5000):
        t.charge(f"user-{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(t) <= 100  # 50 usernames + 50 clients


def test_entries_are_forgotten_once_the_window_has_passed() -> None:
    clock = Tick()
    t = throttle(clock)
    for i in range(20):
        t.charge(f"user-{i}", "10.0.0.1" if i < 10 else "10.0.0.2")
    clock.now += 60.0
    t.charge("late", "10.0.0.3")
    assert len(t) == 2


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("testclient", "testclient"),
        (None, "unknown"),
    ],
)
def test_an_ipv6_client_is_one_client_per_64_so_rotating_its_addresses_does_not_help(
    host: str | None, key: str
) -> None:
    assert client_key(host) == key
