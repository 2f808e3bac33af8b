"""The cursor codec's MAC and the keyset converters, on their own (no server, no database):
the precomputed HMAC states must give exactly the bytes of RFC 2104's HMAC-SHA256, so that
a cursor signed before they were introduced, or by another server of the same deployment
running the previous release, still verifies."""

from __future__ import annotations

import base64
import hmac
import uuid

import orjson
import pytest

from teamboard.errors import BadRequest
from teamboard.kit.keyset import as_uuid, typed_key
from teamboard.kit.pagination import CursorCodec

SCOPE = "tasks:0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee:team"
BINDING = {"sort": "-created_at", "label_id": ["b", "a"]}
KEY = ["2026-12-07T13:45:00.123456+00:00", "0190aaaa-bbbb-7ccc-8ddd-000000000001"]


def rfc2104_cursor(key: bytes, scope: str, binding: dict[str, object], values: list[str]) -> str:
    """A cursor signed the way the codec signed them before (``hmac.digest``)."""
    payload = orjson.dumps(values)
    signed = orjson.dumps([scope, binding], option=orjson.OPT_SORT_KEYS) + payload
    mac = hmac.digest(key, signed, "sha256")[:16]
    return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")


@pytest.mark.parametrize("key_length", [0, 1, 32, 63, 64, 65, 200])
def test_the_mac_is_hmac_sha256_for_every_key_length(key_length: int) -> None:
    secret = bytes(range(256))[:key_length] or b""
    codec = CursorCodec(secret)
    assert codec.encode(SCOPE, BINDING, KEY) == rfc2104_cursor(secret, SCOPE, BINDING, KEY)
    assert codec.decode(SCOPE, BINDING, rfc2104_cursor(secret, SCOPE, BINDING, KEY)) == KEY


def test_each_mac_starts_from_the_keyed_states_not_the_previous_message() -> None:
    codec = CursorCodec(b"k" * 32)
    first = codec.encode(SCOPE, BINDING, KEY)
    codec.encode("tasks:other:team", {}, ["x"])
    assert codec.encode(SCOPE, BINDING, KEY) == first


@pytest.mark.parametrize(
    ("scope", "binding", "secret"),
    [
        ("tasks:another-team:team", BINDING, b"k" * 32),  # another list
        (SCOPE, {"sort": "created_at"}, b"k" * 32),  # other filters or sort
        (SCOPE, BINDING, b"j" * 32),  # another server's key
    ],
)
def test_a_cursor_of_another_list_filter_or_key_is_refused(
    scope: str, binding: dict[str, object], secret: bytes
) -> None:
    cursor = CursorCodec(b"k" * 32).encode(SCOPE, BINDING, KEY)
    with pytest.raises(BadRequest) as refused:
        CursorCodec(secret).decode(scope, binding, cursor)
    assert refused.value.code == "invalid_cursor"


def test_as_uuid_reads_the_canonical_text_and_refuses_anything_else() -> None:
    value = uuid.uuid4()
    parsed = as_uuid(str(value))
    assert isinstance(parsed, uuid.UUID)
    assert parsed == value
    assert str(parsed) == str(value)
    for bad in ("", "not-a-uuid", str(value)[:-1], str(value) + "0", 42, None):
        with pytest.raises(BadRequest) as refused:
            typed_key([bad], [as_uuid])
        assert refused.value.code == "invalid_cursor"
