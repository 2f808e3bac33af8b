"""Hashing of high-entropy secrets (API key secrets, invitation tokens)."""

from __future__ import annotations

import hashlib


def hash_token(token: str) -> str:
    """SHA-256 hex digest: enough for random 256-bit tokens (passwords use argon2id)."""
    return hashlib.sha256(token.encode()).hexdigest()
