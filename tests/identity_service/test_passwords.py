from __future__ import annotations

import hashlib
from typing import Any

import pytest

from identity_service import OWASP_SCRYPT, Scrypt, hash_password, verify_password

FAST = Scrypt(n=2**10)


def test_the_default_cost_is_the_owasp_minimum_and_hashlib_accepts_its_memory() -> None:
    # n=2^17, r=8 needs 128 MiB: above hashlib.scrypt's default maxmem (32 MiB), which refused
    # it with "memory limit exceeded". One hash (~0.5 s) proves the default is usable.
    assert (OWASP_SCRYPT.n, OWASP_SCRYPT.r, OWASP_SCRYPT.p) == (2**17, 8, 1)
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$131072$8$1$")
    assert not OWASP_SCRYPT.needs_rehash(stored)


def test_a_hash_is_verified_with_the_cost_it_records(monkeypatch: pytest.MonkeyPatch) -> None:
    old = hash_password("s3cret", Scrypt(n=2**11, r=4))
    seen: list[tuple[int, int, int]] = []
    real = hashlib.scrypt

    def recording(*args: Any, **kwargs: Any) -> bytes:
        seen.append((kwargs["n"], kwargs["r"], kwargs["p"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", recording)
    assert verify_password("s3cret", old)
    assert seen == [(2**11, 4, 1)]


def test_only_a_hash_made_with_other_parameters_needs_rehashing() -> None:
    assert not FAST.needs_rehash(hash_password("pw", FAST))
    assert FAST.needs_rehash(hash_password("pw", Scrypt(n=2**11)))
    assert FAST.needs_rehash(hash_password("pw", Scrypt(n=2**10, r=4)))
    assert FAST.needs_rehash("garbage")


@pytest.mark.parametrize(
    "stored",
    [
        "scrypt$1073741824$8$1$c2FsdA==$ZGlnZXN0",  # 1 TiB of memory per login
        "scrypt$99999999999999999999999$8$1$c2FsdA==$ZGlnZXN0",
        "scrypt$1024$0$1$c2FsdA==$ZGlnZXN0",
        "scrypt$1000$8$1$c2FsdA==$ZGlnZXN0",  # not a power of two
        "scrypt$1024$8$1$c2FsdA==$",
        "bcrypt$1024$8$1$c2FsdA==$ZGlnZXN0",
    ],
)
def test_a_stored_hash_with_absurd_or_broken_parameters_is_refused_not_computed(
    stored: str,
) -> None:
    assert not verify_password("s3cret", stored)


@pytest.mark.parametrize(
    ("n", "r", "p"), [(2**10 + 1, 8, 1), (512, 8, 1), (2**10, 0, 1), (2**20, 64, 1)]
)
def test_a_cost_that_is_invalid_or_needs_over_a_gibibyte_is_refused(n: int, r: int, p: int) -> None:
    with pytest.raises(ValueError, match="scrypt_"):
        Scrypt(n=n, r=r, p=p)
