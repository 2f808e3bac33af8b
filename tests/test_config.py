"""Settings: production refuses a default or short secret; other environments do not."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from teamboard.config import DEV_SECRET_KEY, Settings


@pytest.mark.parametrize("secret", [DEV_SECRET_KEY, "short-secret", "x" * 31])
def test_production_refuses_weak_secrets(secret: str) -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(environment="production", secret_key=secret)


def test_production_accepts_a_long_random_secret() -> None:
    settings = Settings(environment="production", secret_key="k" * 16 + "0123456789abcdef")
    assert settings.is_production


def test_development_runs_with_the_default_secret() -> None:
    assert Settings(environment="development").secret_key.get_secret_value() == DEV_SECRET_KEY


def test_derived_keys_differ_per_purpose() -> None:
    settings = Settings(secret_key="s" * 40)
    assert settings.derived_key("jwt-access") != settings.derived_key("jwt-refresh")
