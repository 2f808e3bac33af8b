"""Password policy and argon2id hashing.

Hashing runs in a worker thread so a login never blocks the event loop. Unknown accounts
are verified against a dummy hash so both answers take the same time.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from teamboard.config import Settings
from teamboard.errors import Unprocessable

MIN_LENGTH = 8
MAX_LENGTH = 256  # long passphrases welcome; never truncated (argon2 takes any length)


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords (zxcvbn's list), lower-cased."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


def check_password_policy(password: str, *, email: str | None = None) -> None:
    """Refuse passwords that are too short, too long, common, or the account's own email."""
    if len(password) < MIN_LENGTH:
        raise Unprocessable(
            f"Passwords need at least {MIN_LENGTH} characters", code="password_too_short"
        )
    if len(password) > MAX_LENGTH:
        raise Unprocessable(
            f"Passwords may have at most {MAX_LENGTH} characters", code="password_too_long"
        )
    lowered = password.lower()
    if lowered in _common_passwords() or (email and lowered == email.lower()):
        raise Unprocessable(
            "This password is too common; choose another", code="password_too_common"
        )
    if len(set(password)) < 3:
        raise Unprocessable("This password is too repetitive", code="password_too_common")


class PasswordHasher:
    def __init__(self, settings: Settings) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=argon2.Type.ID,
        )
        self._dummy_hash = self._hasher.hash("teamboard-dummy-password")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` matches; a missing hash still costs one verification."""
        target = password_hash or self._dummy_hash
        try:
            ok = await asyncio.to_thread(self._hasher.verify, target, password)
        except (VerificationError, InvalidHashError):
            return False
        return bool(ok) and password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
