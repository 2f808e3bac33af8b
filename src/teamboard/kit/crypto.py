"""Encryption of secrets the server must use again (webhook signing secrets, kept responses
that hold a secret: ``teamboard.idempotency``).

AES-256-GCM with a key derived from SECRET_KEY for one purpose (``Settings.derived_key``)
and a random 96-bit nonce per encryption. The associated data binds a ciphertext to the
row it belongs to, so a ciphertext copied into another row does not decrypt. Stored as
``version byte || nonce || ciphertext+tag``. Changing SECRET_KEY makes stored secrets
unreadable: their webhooks must then be registered again.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
_NONCE_BYTES = 12


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a 256-bit key is required")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, bound_to: str) -> bytes:
        return self.seal_bytes(plaintext.encode(), bound_to)

    def open(self, sealed: bytes, bound_to: str) -> str:
        """The plaintext; ``ValueError`` when the key, the binding or the bytes are wrong."""
        return self.open_bytes(sealed, bound_to).decode()

    def seal_bytes(self, plaintext: bytes, bound_to: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, bound_to.encode())

    def open_bytes(self, sealed: bytes, bound_to: str) -> bytes:
        """As :meth:`open`, for bytes."""
        if not is_sealed(sealed):
            raise ValueError("unknown secret format")
        nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, bound_to.encode())
        except InvalidTag as exc:
            raise ValueError("the secret cannot be decrypted with this key") from exc


def is_sealed(data: bytes) -> bool:
    """Whether ``data`` is in the sealed format (it starts with the version byte, which no
    JSON text does)."""
    return data[:1] == _VERSION
