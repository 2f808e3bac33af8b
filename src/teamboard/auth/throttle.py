"""Login throttling that slows guessing without letting an attacker lock a victim out.

Failures are counted per (account, IP) and per IP, which stop a guesser without touching
the victim's own attempts from elsewhere. A high per-account ceiling stops distributed
guessing, and it does not apply from an IP that recently logged in to that account, so the
owner of the account keeps getting in. Keys hold a hash of the email, never the email, and
are kept whether or not the account exists, so throttling reveals nothing.

When the counter store (Redis) fails, login fails closed with 503 rather than letting
unthrottled guesses through.
"""

from __future__ import annotations

import logging

import redis

from teamboard.config import Settings
from teamboard.errors import RateLimited, ServiceUnavailable
from teamboard.kit.ratelimit import CounterStore
from teamboard.kit.secrets import hash_token

logger = logging.getLogger("teamboard.auth.throttle")
KNOWN_IP_TTL = 30 * 24 * 3600


def _account(email: str) -> str:
    return hash_token(email)[:32]


class LoginThrottle:
    def __init__(self, store: CounterStore, settings: Settings) -> None:
        self._store = store
        self._window = settings.login_window_seconds
        self._limits = (
            ("ai", settings.login_max_failures_per_account_ip),
            ("ip", settings.login_max_failures_per_ip),
            ("a", settings.login_max_failures_per_account),
        )

    def _keys(self, email: str, ip: str) -> dict[str, str]:
        account = _account(email)
        return {
            "ai": f"login:ai:{account}:{ip}",
            "ip": f"login:ip:{ip}",
            "a": f"login:a:{account}",
            "known": f"login:known:{account}:{ip}",
        }

    async def check(self, email: str, ip: str) -> None:
        """Raise 429 (with Retry-After) when this attempt must wait.

        The attempt is counted against the (account, IP) limit here, atomically and before
        the password is verified, so a burst of concurrent guesses cannot all pass the check
        before the first failure is recorded; a success resets that counter.
        """
        keys = self._keys(email, ip)
        try:
            # The per-IP and per-account limits are read first, so an attempt they refuse
            # is not counted; the (account, IP) limit is counted last.
            for name, limit in sorted(self._limits, key=lambda item: item[0] == "ai"):
                if name == "a" and await self._store.is_marked(keys["known"]):
                    continue
                if name == "ai":
                    count = await self._store.hit(keys[name], self._window)
                    over = count.value > limit
                else:
                    count = await self._store.get(keys[name])
                    over = count.value >= limit
                if over:
                    raise RateLimited(
                        count.reset_after,
                        "Too many failed sign-in attempts; retry later",
                        code="login_throttled",
                    )
        except redis.RedisError as exc:
            raise self._unavailable() from exc

    async def record_failure(self, email: str, ip: str) -> None:
        keys = self._keys(email, ip)
        try:
            for name, _ in self._limits:
                if name != "ai":  # counted by check(), before the password was verified
                    await self._store.hit(keys[name], self._window)
        except redis.RedisError as exc:
            raise self._unavailable() from exc

    async def record_success(self, email: str, ip: str) -> None:
        keys = self._keys(email, ip)
        try:
            await self._store.reset(keys["ai"])
            await self._store.mark(keys["known"], KNOWN_IP_TTL)
        except redis.RedisError as exc:
            raise self._unavailable() from exc

    @staticmethod
    def _unavailable() -> ServiceUnavailable:
        logger.error("login throttle store unavailable; refusing logins")
        return ServiceUnavailable(
            "Sign-in is temporarily unavailable",
            code="login_unavailable",
            headers={"Retry-After": "5"},
        )
