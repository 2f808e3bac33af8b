"""Authentication through the HTTP API: registration, login, JWTs, refresh rotation,
login throttling and team API keys.

Every test uses its own emails, and every test that records failed logins does so from its
own random client IP, so the throttle counters (in memory, or in Redis where they outlive
the run) of different tests and runs never meet.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx
import jwt
import psycopg
import pytest

from teamboard.config import Settings
from tests.conftest import Actor

API = "/api/v1"
PROBLEM = "application/problem+json"
Owner = psycopg.Connection[dict[str, Any]]
MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def unique_email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


def strong_password() -> str:
    return f"Tb-{secrets.token_urlsafe(18)}"


def random_ip() -> str:
    return "10.{}.{}.{}".format(*(secrets.randbelow(254) + 1 for _ in range(3)))


@asynccontextmanager
async def client_from(app: Any, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests come from ``ip`` (the app sees it as ``request.client``)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body


async def register(
    client: httpx.AsyncClient, email: str, password: str, name: str = "Someone"
) -> httpx.Response:
    return await client.post(
        f"{API}/auth/register",
        json={"email": email, "password": password, "display_name": name},
    )


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(f"{API}/auth/login", json={"email": email, "password": password})


async def registered_login(
    client: httpx.AsyncClient, email: str | None = None, password: str | None = None
) -> tuple[str, str, dict[str, Any]]:
    """Register and log in; (email, password, token pair)."""
    email = email or unique_email("user")
    password = password or strong_password()
    assert (await register(client, email, password)).status_code == 202
    response = await login(client, email, password)
    assert response.status_code == 200, response.text
    return email, password, response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{API}/auth/refresh", json={"refresh_token": token})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hand_jwt(
    header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes] | None
) -> str:
    """Build a JWT byte by byte, so no library can refuse (or fix) what we ask for."""
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = b"" if sign is None else sign(signing_input.encode())
    return f"{signing_input}.{b64url(signature)}"


def hmac_signer(key: bytes, digest: str = "sha256") -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(key, data, digest).digest()


# --- A small RSA implementation (the test dependencies do not include `cryptography`) ---

_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, math.isqrt(p) + 1, 2))]
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def _probably_prime(n: int, rounds: int = 40) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if _probably_prime(candidate):
            return candidate


def _der(tag: int, content: bytes) -> bytes:
    if len(content) < 0x80:
        length = bytes([len(content)])
    else:
        raw = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


@dataclass(frozen=True)
class RsaKey:
    n: int
    e: int
    d: int

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8

    def sign_rs256(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 (what JWS calls RS256)."""
        digest_info = _SHA256_DIGEST_INFO + hashlib.sha256(data).digest()
        encoded = b"\x00\x01" + b"\xff" * (self.size - 3 - len(digest_info)) + b"\x00"
        encoded += digest_info
        return pow(int.from_bytes(encoded, "big"), self.d, self.n).to_bytes(self.size, "big")

    def public_pem(self) -> bytes:
        rsa_public_key = _der(0x30, _der_int(self.n) + _der_int(self.e))
        algorithm = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")
        spki = _der(0x30, algorithm + _der(0x03, b"\x00" + rsa_public_key))
        body = base64.b64encode(spki).decode()
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return (
            "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"
        ).encode()


@lru_cache(maxsize=1)
def rsa_key() -> RsaKey:
    e = 65537
    while True:
        p, q = _prime(1024), _prime(1024)
        phi = (p - 1) * (q - 1)
        if p != q and math.gcd(e, phi) == 1:
            return RsaKey(p * q, e, pow(e, -1, phi))


# ---------------------------------------------------------------------------------------
# 1. Registration and login
# ---------------------------------------------------------------------------------------


async def test_register_login_and_me(
    client: httpx.AsyncClient, owner: Owner, settings: Settings
) -> None:
    email, password = unique_email("alice"), strong_password()
    registered = await register(client, email, password, "Alice")
    assert registered.status_code == 202, registered.text
    assert registered.json()["status"] == "accepted"

    response = await login(client, email, password)
    assert response.status_code == 200, response.text
    pair = response.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == settings.access_token_ttl_seconds
    assert pair["access_token"] != pair["refresh_token"]

    me = await client.get(f"{API}/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == email
    assert me.json()["display_name"] == "Alice"
    row = owner.execute("select id from app_user where email = %s", (email,)).fetchone()
    assert row is not None
    assert me.json()["id"] == str(row["id"])


async def test_register_taken_email_is_indistinguishable(
    client: httpx.AsyncClient, app: Any, owner: Owner
) -> None:
    email, password = unique_email("taken"), strong_password()
    first = await register(client, email, password, "Original")
    fresh = await register(client, unique_email("fresh"), strong_password())
    again = await register(client, email, strong_password(), "Impostor")
    # The same address in another case is the same account (emails are normalised).
    upper = await register(client, email.upper(), strong_password(), "Impostor")

    assert first.status_code == fresh.status_code == again.status_code == upper.status_code == 202
    assert first.json() == fresh.json() == again.json() == upper.json()
    assert first.headers["content-type"] == again.headers["content-type"]

    rows = owner.execute("select display_name from app_user where email = %s", (email,)).fetchall()
    assert rows == [{"display_name": "Original"}]
    async with client_from(app, random_ip()) as c:
        assert (await login(c, email, password)).status_code == 200
        assert_problem(await login(c, email, "not-the-password-at-all"), 401)


# ---------------------------------------------------------------------------------------
# 2. Password policy and hashing
# ---------------------------------------------------------------------------------------


async def test_password_too_short(client: httpx.AsyncClient, owner: Owner) -> None:
    email = unique_email("short")
    assert_problem(await register(client, email, "aB3$xyz"), 422, "password_too_short")
    assert owner.execute("select 1 from app_user where email = %s", (email,)).fetchone() is None


@pytest.mark.parametrize("password", ["password1", "qwerty123", "Password1", "QWERTY123"])
async def test_common_passwords_refused(
    client: httpx.AsyncClient, owner: Owner, password: str
) -> None:
    email = unique_email("common")
    assert_problem(await register(client, email, password), 422, "password_too_common")
    assert owner.execute("select 1 from app_user where email = %s", (email,)).fetchone() is None


async def test_password_too_long(client: httpx.AsyncClient) -> None:
    password = secrets.token_urlsafe(300)[:257]
    assert_problem(await register(client, unique_email("long"), password), 422, "password_too_long")


async def test_long_password_works(client: httpx.AsyncClient) -> None:
    password = secrets.token_urlsafe(200)[:200]
    assert len(password) == 200
    email = unique_email("long")
    assert (await register(client, email, password)).status_code == 202
    assert (await login(client, email, password)).status_code == 200


async def test_password_never_truncated(client: httpx.AsyncClient, app: Any) -> None:
    password = secrets.token_urlsafe(150)[:150]
    assert len(password) == 150
    email = unique_email("trunc")
    assert (await register(client, email, password)).status_code == 202
    async with client_from(app, random_ip()) as c:
        for prefix in (password[:128], password[:72], password[:149]):
            assert_problem(await login(c, email, prefix), 401, "invalid_credentials")
        assert (await login(c, email, password)).status_code == 200


async def test_password_hash_is_argon2id(client: httpx.AsyncClient, owner: Owner) -> None:
    email, password = unique_email("hash"), strong_password()
    assert (await register(client, email, password)).status_code == 202
    row = owner.execute("select password_hash from app_user where email = %s", (email,)).fetchone()
    assert row is not None
    stored: str = row["password_hash"]
    match = re.fullmatch(
        r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+", stored
    )
    assert match is not None, stored
    memory, time_cost, parallelism = (int(g) for g in match.groups())
    assert memory >= 19456
    assert time_cost >= 2
    assert parallelism == 1
    assert password not in stored


# ---------------------------------------------------------------------------------------
# 3. No enumeration at login
# ---------------------------------------------------------------------------------------


async def test_login_unknown_email_and_wrong_password_look_the_same(
    client: httpx.AsyncClient, app: Any
) -> None:
    email = unique_email("known")
    assert (await register(client, email, strong_password())).status_code == 202
    async with client_from(app, random_ip()) as c:
        wrong = await login(c, email, "definitely-Wrong-42")
        unknown = await login(c, unique_email("nobody"), "definitely-Wrong-42")
    wrong_body = assert_problem(wrong, 401, "invalid_credentials")
    unknown_body = assert_problem(unknown, 401, "invalid_credentials")
    # Unknown accounts are verified against an internal dummy hash; its password opens nothing.
    async with client_from(app, random_ip()) as c:
        dummy = await login(c, unique_email("nobody"), "teamboard-dummy-password")
    dummy_body = assert_problem(dummy, 401, "invalid_credentials")
    dummy_body.pop("instance", None)
    wrong_body.pop("instance", None)
    unknown_body.pop("instance", None)
    assert wrong_body == unknown_body == dummy_body
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")


# ---------------------------------------------------------------------------------------
# 4. JWT attack corpus
# ---------------------------------------------------------------------------------------


@dataclass
class JwtMaterial:
    settings: Settings
    user: Actor
    other: Actor
    refresh_token: str
    valid_access: str

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "sub": str(self.user.id),
            "sid": str(uuid.uuid4()),
            "iat": now,
            "exp": now + 300,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def access(self, header: dict[str, Any] | None = None, **claims: Any) -> str:
        """A hand-made access token; with no arguments it is a valid one."""
        head = {"alg": "HS256", "typ": "at+jwt", **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        key = self.settings.derived_key("jwt-access")
        return hand_jwt(head, self.claims(**claims), hmac_signer(key))


@pytest.fixture
async def jwt_material(
    client: httpx.AsyncClient, settings: Settings, make_user: MakeUser
) -> JwtMaterial:
    user, other = make_user("jwt"), make_user("jwt-other")
    _, _, pair = await registered_login(client)
    return JwtMaterial(settings, user, other, pair["refresh_token"], pair["access_token"])


def _flip_middle(segment: str) -> str:
    i = len(segment) // 2
    return segment[:i] + ("A" if segment[i] != "A" else "B") + segment[i + 1 :]


def _case_headers(case: str, m: JwtMaterial) -> dict[str, str]:
    """Headers for one case; values are latin-1 text (what an HTTP header carries)."""
    now = int(time.time())
    if case == "missing_header":
        return {}
    if case == "non_ascii_scheme":  # a header is latin-1 text; this once answered 500
        return {"Authorization": f"B\u00ebarer {m.access()}"}
    if case == "non_ascii_token":
        return {"Authorization": "Bearer \u00e9t\u00e9"}
    if case == "empty_bearer":
        return {"Authorization": "Bearer "}
    if case == "basic_scheme":
        return {"Authorization": "Basic " + base64.b64encode(b"a@example.com:pw").decode()}
    if case == "token_scheme_with_valid_jwt":
        return {"Authorization": f"Token {m.access()}"}
    if case == "bare_valid_jwt":
        return {"Authorization": m.access()}
    if case == "garbage":
        return bearer("this-is-not-a-jwt")
    if case == "garbage_three_parts":
        return bearer("abc.def.ghi")
    if case in ("alg_none", "alg_None", "alg_NONE"):
        alg = case.removeprefix("alg_")
        return bearer(hand_jwt({"alg": alg, "typ": "at+jwt"}, m.claims(), None))
    if case == "alg_none_with_signature":
        token = m.access()
        header = b64url(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
        return bearer(header + token[token.index(".") :])
    if case == "hs256_wrong_key":
        signer = hmac_signer(b"not-the-key-" * 4)
        return bearer(hand_jwt({"alg": "HS256", "typ": "at+jwt"}, m.claims(), signer))
    if case == "hs256_refresh_key":
        key = m.settings.derived_key("jwt-refresh")
        return bearer(hand_jwt({"alg": "HS256", "typ": "at+jwt"}, m.claims(), hmac_signer(key)))
    if case == "hs512_right_key":
        key = m.settings.derived_key("jwt-access")
        signer = hmac_signer(key, "sha512")
        return bearer(hand_jwt({"alg": "HS512", "typ": "at+jwt"}, m.claims(), signer))
    if case == "rs256":
        rsa = rsa_key()
        return bearer(hand_jwt({"alg": "RS256", "typ": "at+jwt"}, m.claims(), rsa.sign_rs256))
    if case == "hs256_signed_with_public_key_pem":
        pem = rsa_key().public_pem()
        return bearer(hand_jwt({"alg": "HS256", "typ": "at+jwt"}, m.claims(), hmac_signer(pem)))
    if case == "expired":
        return bearer(m.access(iat=now - 600, exp=now - 60))
    if case == "expired_by_pyjwt":
        claims = m.claims(iat=now - 600, exp=now - 1)
        key = m.settings.derived_key("jwt-access")
        return bearer(jwt.encode(claims, key, "HS256", headers={"typ": "at+jwt"}))
    if case == "wrong_aud":
        return bearer(m.access(aud="someone-else"))
    if case == "refresh_aud":
        return bearer(m.access(aud=f"{m.settings.jwt_audience}:refresh"))
    if case == "wrong_iss":
        return bearer(m.access(iss="evil-issuer"))
    if case == "missing_exp":
        return bearer(m.access(exp=None))
    if case == "missing_sub":
        return bearer(m.access(sub=None))
    if case == "missing_sid":
        return bearer(m.access(sid=None))
    if case == "sub_not_uuid":
        return bearer(m.access(sub="admin"))
    if case == "refresh_token_as_access":
        return bearer(m.refresh_token)
    if case == "tampered_signature":
        token = m.access()
        head, payload, signature = token.split(".")
        tampered = _flip_middle(signature)
        assert b64url_decode(tampered) != b64url_decode(signature)
        return bearer(f"{head}.{payload}.{tampered}")
    if case == "tampered_payload":
        head, _, signature = m.access().split(".")
        payload = b64url(json.dumps(m.claims(sub=str(m.other.id))).encode())
        return bearer(f"{head}.{payload}.{signature}")
    if case == "missing_typ":
        return bearer(m.access(header={"typ": None}))
    if case == "typ_jwt":
        return bearer(m.access(header={"typ": "JWT"}))
    if case == "typ_refresh":
        return bearer(m.access(header={"typ": "rt+jwt"}))
    raise AssertionError(f"unknown case {case}")


JWT_CASES = [
    "missing_header",
    "non_ascii_scheme",
    "non_ascii_token",
    "empty_bearer",
    "basic_scheme",
    "token_scheme_with_valid_jwt",
    "bare_valid_jwt",
    "garbage",
    "garbage_three_parts",
    "alg_none",
    "alg_None",
    "alg_NONE",
    "alg_none_with_signature",
    "hs256_wrong_key",
    "hs256_refresh_key",
    "hs512_right_key",
    "rs256",
    "hs256_signed_with_public_key_pem",
    "expired",
    "expired_by_pyjwt",
    "wrong_aud",
    "refresh_aud",
    "wrong_iss",
    "missing_exp",
    "missing_sub",
    "missing_sid",
    "sub_not_uuid",
    "refresh_token_as_access",
    "tampered_signature",
    "tampered_payload",
    "missing_typ",
    "typ_jwt",
    "typ_refresh",
]
NO_CREDENTIALS = {
    "missing_header",
    "non_ascii_scheme",
    "empty_bearer",
    "basic_scheme",
    "token_scheme_with_valid_jwt",
    "bare_valid_jwt",
}


async def test_hand_made_access_token_is_accepted(
    client: httpx.AsyncClient, jwt_material: JwtMaterial
) -> None:
    """The control for the corpus: the token builder makes tokens the API accepts, so each
    refusal below is caused by the one thing its case changes."""
    for token in (jwt_material.access(), jwt_material.valid_access):
        response = await client.get(f"{API}/me", headers=bearer(token))
        assert response.status_code == 200, response.text
    me = await client.get(f"{API}/me", headers=bearer(jwt_material.access()))
    assert me.json()["id"] == str(jwt_material.user.id)
    other = await client.get(
        f"{API}/me", headers=bearer(jwt_material.access(sub=str(jwt_material.other.id)))
    )
    assert other.json()["id"] == str(jwt_material.other.id)


def test_hand_made_rsa_signature_verifies() -> None:
    """The RS256 token of the corpus carries a genuine RSA signature."""
    key = rsa_key()
    assert key.n.bit_length() == 2048
    signature = key.sign_rs256(b"payload")
    encoded = pow(int.from_bytes(signature, "big"), key.e, key.n).to_bytes(key.size, "big")
    assert encoded.endswith(_SHA256_DIGEST_INFO + hashlib.sha256(b"payload").digest())
    assert encoded.startswith(b"\x00\x01\xff")
    assert key.public_pem().startswith(b"-----BEGIN PUBLIC KEY-----\nMIIBIjAN")


@pytest.mark.parametrize("case", JWT_CASES)
async def test_jwt_attack_refused(
    client: httpx.AsyncClient, jwt_material: JwtMaterial, case: str
) -> None:
    headers = {
        name.encode("latin-1"): value.encode("latin-1")
        for name, value in _case_headers(case, jwt_material).items()
    }
    response = await client.get(f"{API}/me", headers=headers)
    body = assert_problem(response, 401)
    assert body["code"] == ("unauthorized" if case in NO_CREDENTIALS else "invalid_token"), body
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert "email" not in body


def test_pyjwt_refuses_public_key_as_hmac_secret() -> None:
    """Why the HS256-with-public-key case is built by hand: PyJWT will not build it."""
    with pytest.raises(jwt.InvalidKeyError):
        jwt.encode({"sub": "x"}, rsa_key().public_pem(), "HS256")


# ---------------------------------------------------------------------------------------
# 5. Refresh-token rotation, reuse detection and logout
# ---------------------------------------------------------------------------------------


def _session_rows(owner: Owner, email: str) -> list[dict[str, Any]]:
    return owner.execute(
        "select s.id, s.revoked_at, s.revoked_reason from auth_session s"
        " join app_user u on u.id = s.user_id where u.email = %s",
        (email,),
    ).fetchall()


async def test_refresh_rotation_and_reuse_revokes_family(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    email, _, first = await registered_login(client)

    second = await refresh(client, first["refresh_token"])
    assert second.status_code == 200, second.text
    pair2 = second.json()
    assert pair2["token_type"] == "bearer"
    assert pair2["refresh_token"] != first["refresh_token"]
    me = await client.get(f"{API}/me", headers=bearer(pair2["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == email

    third = await refresh(client, pair2["refresh_token"])  # the new token works once
    assert third.status_code == 200, third.text
    newest = third.json()["refresh_token"]
    assert newest not in (first["refresh_token"], pair2["refresh_token"])
    (session,) = _session_rows(owner, email)
    assert session["revoked_at"] is None

    reused = await refresh(client, pair2["refresh_token"])
    assert_problem(reused, 401, "refresh_token_reused")

    (session,) = _session_rows(owner, email)
    assert session["revoked_at"] is not None
    assert session["revoked_reason"] == "refresh_token_reuse"
    # The newest token of the family was never used, and is dead all the same.
    assert_problem(await refresh(client, newest), 401)
    assert_problem(await refresh(client, first["refresh_token"]), 401)
    used = owner.execute(
        "select count(*) as n from refresh_token where session_id = %s and used_at is not null",
        (session["id"],),
    ).fetchone()
    assert used == {"n": 2}


async def test_refresh_refuses_other_tokens(client: httpx.AsyncClient) -> None:
    _, _, pair = await registered_login(client)
    assert_problem(await refresh(client, pair["access_token"]), 401, "invalid_token")
    assert_problem(await refresh(client, "garbage"), 401, "invalid_token")
    head, payload, signature = pair["refresh_token"].split(".")
    tampered = f"{head}.{payload}.{_flip_middle(signature)}"
    assert_problem(await refresh(client, tampered), 401, "invalid_token")
    # None of these burned the real refresh token.
    assert (await refresh(client, pair["refresh_token"])).status_code == 200


async def test_other_sessions_survive_reuse(client: httpx.AsyncClient, owner: Owner) -> None:
    """Reuse revokes one family (session), not the user's other sessions."""
    email, password, one = await registered_login(client)
    other = (await login(client, email, password)).json()
    assert (await refresh(client, one["refresh_token"])).status_code == 200
    assert_problem(await refresh(client, one["refresh_token"]), 401, "refresh_token_reused")
    assert (await refresh(client, other["refresh_token"])).status_code == 200
    reasons = sorted(str(row["revoked_reason"]) for row in _session_rows(owner, email))
    assert reasons == ["None", "refresh_token_reuse"]


async def test_logout_revokes_refresh_token(client: httpx.AsyncClient, owner: Owner) -> None:
    email, _, pair = await registered_login(client)
    response = await client.post(f"{API}/auth/logout", headers=bearer(pair["access_token"]))
    assert response.status_code == 204, response.text
    (session,) = _session_rows(owner, email)
    assert session["revoked_at"] is not None
    assert session["revoked_reason"] == "logout"
    assert_problem(await refresh(client, pair["refresh_token"]), 401)
    assert_problem(await client.post(f"{API}/auth/logout"), 401, "unauthorized")


async def test_concurrent_double_refresh_rotates_once(
    client: httpx.AsyncClient, owner: Owner
) -> None:
    email, _, pair = await registered_login(client)
    responses = await asyncio.gather(
        refresh(client, pair["refresh_token"]), refresh(client, pair["refresh_token"])
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) <= 1, statuses
    assert statuses == [200, 401], [r.text for r in responses]
    loser = next(r for r in responses if r.status_code == 401)
    assert_problem(loser, 401, "refresh_token_reused")
    # The race was detected as reuse: the family is revoked, the winner's token included.
    (session,) = _session_rows(owner, email)
    assert session["revoked_at"] is not None
    winner = next(r for r in responses if r.status_code == 200).json()
    assert_problem(await refresh(client, winner["refresh_token"]), 401)


# ---------------------------------------------------------------------------------------
# 6. Login throttling
# ---------------------------------------------------------------------------------------


async def test_login_throttled_per_account_and_ip(
    client: httpx.AsyncClient, app: Any, settings: Settings
) -> None:
    assert settings.login_max_failures_per_account_ip == 5
    email, password = unique_email("victim"), strong_password()
    assert (await register(client, email, password)).status_code == 202

    async with client_from(app, random_ip()) as attacker:
        for _ in range(5):
            assert_problem(
                await login(attacker, email, "Wrong-guess-123"), 401, "invalid_credentials"
            )
        throttled = await login(attacker, email, password)  # even the right password waits
        assert_problem(throttled, 429, "login_throttled")
        retry_after = int(throttled.headers["retry-after"])
        assert 1 <= retry_after <= settings.login_window_seconds + 1
        assert_problem(await login(attacker, email, "Wrong-guess-123"), 429, "login_throttled")

    async with client_from(app, random_ip()) as victim:  # the owner, from elsewhere
        response = await login(victim, email, password)
        assert response.status_code == 200, response.text
        assert response.json()["access_token"]


async def test_login_throttle_from_the_brief_ip(client: httpx.AsyncClient, app: Any) -> None:
    """As above, with the victim at 10.9.9.9 (only successes are ever recorded for it)."""
    email, password = unique_email("victim"), strong_password()
    assert (await register(client, email, password)).status_code == 202
    async with client_from(app, random_ip()) as attacker:
        for _ in range(5):
            assert_problem(await login(attacker, email, "Wrong-guess-123"), 401)
        assert_problem(await login(attacker, email, password), 429, "login_throttled")
    transport = httpx.ASGITransport(app=app, client=("10.9.9.9", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as victim:
        assert (await login(victim, email, password)).status_code == 200


async def test_concurrent_guesses_cannot_outrun_the_throttle(
    client: httpx.AsyncClient, app: Any
) -> None:
    """Guesses sent at once are counted before their password is checked, so only the
    allowed five are ever verified (each guess used to pass the check before any failure
    was recorded, letting a burst of N guesses through)."""
    email, password = unique_email("burst"), strong_password()
    assert (await register(client, email, password)).status_code == 202
    async with client_from(app, random_ip()) as attacker:
        responses = await asyncio.gather(
            *(login(attacker, email, f"Wrong-guess-{i}") for i in range(20))
        )
        statuses = [r.status_code for r in responses]
        assert statuses.count(401) == 5, statuses
        assert statuses.count(429) == 15, statuses
        for response in responses:
            if response.status_code == 429:
                assert_problem(response, 429, "login_throttled")
        assert_problem(await login(attacker, email, password), 429, "login_throttled")
    async with client_from(app, random_ip()) as victim:
        assert (await login(victim, email, password)).status_code == 200


async def test_login_throttle_same_for_unknown_accounts(app: Any) -> None:
    """Throttling answers the same for an account that does not exist (no enumeration)."""
    async with client_from(app, random_ip()) as attacker:
        email = unique_email("ghost")
        for _ in range(5):
            assert_problem(await login(attacker, email, "Wrong-guess-123"), 401)
        assert_problem(await login(attacker, email, "Wrong-guess-123"), 429, "login_throttled")


async def test_login_success_resets_account_ip_counter(client: httpx.AsyncClient, app: Any) -> None:
    email, password = unique_email("typo"), strong_password()
    assert (await register(client, email, password)).status_code == 202
    async with client_from(app, random_ip()) as c:
        for _ in range(4):
            assert_problem(await login(c, email, "Typo-password-1"), 401)
        assert (await login(c, email, password)).status_code == 200
        for _ in range(4):
            assert_problem(await login(c, email, "Typo-password-1"), 401)
        assert (await login(c, email, password)).status_code == 200


# ---------------------------------------------------------------------------------------
# 7. Team API keys
# ---------------------------------------------------------------------------------------


KEY_FORMAT = re.compile(r"^tb_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


async def create_key(
    client: httpx.AsyncClient, actor: Actor, team_id: uuid.UUID, scopes: list[str]
) -> dict[str, Any]:
    response = await client.post(
        f"{API}/teams/{team_id}/api-keys",
        json={"name": f"key-{'-'.join(scopes)}", "scopes": scopes},
        headers=actor.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def team_with_owner(make_user: MakeUser, make_team: MakeTeam) -> tuple[Actor, uuid.UUID]:
    actor = make_user("keyowner")
    return actor, await make_team(actor)


async def test_api_key_created_once_and_stored_hashed(
    client: httpx.AsyncClient, owner: Owner, team_with_owner: tuple[Actor, uuid.UUID]
) -> None:
    actor, team_id = team_with_owner
    created = await create_key(client, actor, team_id, ["read"])
    token = created["token"]
    match = KEY_FORMAT.fullmatch(token)
    assert match is not None, token
    prefix, secret = match.groups()
    assert created["prefix"] == prefix
    assert created["scopes"] == ["read"]
    assert created["created_by"] == str(actor.id)
    assert created["last_used_at"] is None

    listed = await client.get(f"{API}/teams/{team_id}/api-keys", headers=actor.headers)
    assert listed.status_code == 200, listed.text
    (item,) = [i for i in listed.json()["items"] if i["id"] == created["id"]]
    assert item.get("token") is None
    assert item["prefix"] == prefix
    assert secret not in listed.text

    row = owner.execute("select * from api_key where id = %s", (created["id"],)).fetchone()
    assert row is not None
    assert row["prefix"] == prefix
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert row["last_used_at"] is None
    for value in row.values():
        assert secret not in str(value)
        assert token not in str(value)


async def test_api_key_read_scope(
    client: httpx.AsyncClient,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
    team_with_owner: tuple[Actor, uuid.UUID],
) -> None:
    actor, team_id = team_with_owner
    created = await create_key(client, actor, team_id, ["read"])
    key = bearer(created["token"])

    team = await client.get(f"{API}/teams/{team_id}", headers=key)
    assert team.status_code == 200, team.text
    assert team.json()["id"] == str(team_id)
    projects = await client.get(f"{API}/teams/{team_id}/projects", headers=key)
    assert projects.status_code == 200, projects.text

    row = owner.execute(
        "select last_used_at from api_key where id = %s", (created["id"],)
    ).fetchone()
    assert row is not None
    assert row["last_used_at"] is not None

    # Another team of the same creator, and a stranger's team: both look absent.
    own_other_team = await make_team(actor)
    foreign_team = await make_team(make_user("stranger"))
    for other in (own_other_team, foreign_team):
        assert_problem(await client.get(f"{API}/teams/{other}", headers=key), 404, "not_found")

    write = await client.post(
        f"{API}/teams/{team_id}/projects", json={"key": "READK", "name": "Nope"}, headers=key
    )
    assert_problem(write, 403, "insufficient_scope")
    assert (
        owner.execute(
            "select 1 from project where team_id = %s and key = 'READK'", (team_id,)
        ).fetchone()
        is None
    )


async def test_api_key_write_scope(
    client: httpx.AsyncClient, owner: Owner, team_with_owner: tuple[Actor, uuid.UUID]
) -> None:
    actor, team_id = team_with_owner
    created = await create_key(client, actor, team_id, ["write"])
    key = bearer(created["token"])
    response = await client.post(
        f"{API}/teams/{team_id}/projects", json={"key": "APIK", "name": "Via key"}, headers=key
    )
    assert response.status_code == 201, response.text
    row = owner.execute(
        "select created_by from project where team_id = %s and key = 'APIK'", (team_id,)
    ).fetchone()
    assert row == {"created_by": actor.id}
    # A write key is still not an admin key.
    admin_action = await client.post(
        f"{API}/teams/{team_id}/api-keys", json={"name": "k", "scopes": ["admin"]}, headers=key
    )
    assert_problem(admin_action, 403, "insufficient_scope")


async def test_api_key_revoked(
    client: httpx.AsyncClient, team_with_owner: tuple[Actor, uuid.UUID]
) -> None:
    actor, team_id = team_with_owner
    created = await create_key(client, actor, team_id, ["read"])
    key = bearer(created["token"])
    assert (await client.get(f"{API}/teams/{team_id}", headers=key)).status_code == 200
    revoked = await client.delete(
        f"{API}/teams/{team_id}/api-keys/{created['id']}", headers=actor.headers
    )
    assert revoked.status_code == 204, revoked.text
    assert_problem(await client.get(f"{API}/teams/{team_id}", headers=key), 401, "invalid_api_key")


async def test_api_key_expired(
    client: httpx.AsyncClient, owner: Owner, team_with_owner: tuple[Actor, uuid.UUID]
) -> None:
    actor, team_id = team_with_owner
    created = await create_key(client, actor, team_id, ["read"])
    key = bearer(created["token"])
    assert (await client.get(f"{API}/teams/{team_id}", headers=key)).status_code == 200
    owner.execute(
        "update api_key set expires_at = now() - interval '1 minute' where id = %s",
        (created["id"],),
    )
    assert_problem(await client.get(f"{API}/teams/{team_id}", headers=key), 401, "invalid_api_key")


async def test_api_key_malformed_or_forged(
    client: httpx.AsyncClient, team_with_owner: tuple[Actor, uuid.UUID]
) -> None:
    actor, team_id = team_with_owner
    created = await create_key(client, actor, team_id, ["read"])
    token = created["token"]
    prefix = created["prefix"]
    assert (await client.get(f"{API}/teams/{team_id}", headers=bearer(token))).status_code == 200
    forged = [
        "tb_",
        "tb_garbage",
        f"tb_{prefix}",
        f"tb_{prefix}_short",
        token[:-1],
        token + "x",
        f"tb_{prefix}_{secrets.token_urlsafe(32)}",  # right prefix, wrong secret
        f"tb_{secrets.token_hex(6)}_{token.split('_', 2)[2]}",  # wrong prefix, right secret
    ]
    if prefix.upper() != prefix:  # a prefix of digits only has no other case
        forged.append(f"tb_{prefix.upper()}_{token.split('_', 2)[2]}")
    for candidate in forged:
        assert candidate != token
        response = await client.get(f"{API}/teams/{team_id}", headers=bearer(candidate))
        assert_problem(response, 401, "invalid_api_key")


async def test_api_key_not_allowed_on_user_routes(
    client: httpx.AsyncClient, team_with_owner: tuple[Actor, uuid.UUID]
) -> None:
    actor, team_id = team_with_owner
    created = await create_key(client, actor, team_id, ["admin"])
    key = bearer(created["token"])
    assert_problem(await client.get(f"{API}/me", headers=key), 403, "api_key_not_allowed")
    assert_problem(await client.get(f"{API}/teams", headers=key), 403, "api_key_not_allowed")
    assert_problem(await client.post(f"{API}/auth/logout", headers=key), 403, "api_key_not_allowed")
