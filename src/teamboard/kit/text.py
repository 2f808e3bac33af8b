"""Validation of free text that goes into the database."""

from __future__ import annotations


def no_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL: refuse it as bad input instead of failing in SQL."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value
