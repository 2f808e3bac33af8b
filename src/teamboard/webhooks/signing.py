"""Webhook signatures: what teamboard sends, and how a receiver checks it.

Every delivery is a ``POST`` with a JSON body and these headers:

* ``Teamboard-Timestamp``: the Unix time (seconds) of this attempt;
* ``Teamboard-Signature``: ``v1=<hex>``, the HMAC-SHA256, keyed with the webhook's secret
  (``whsec_...``, shown once when the webhook is created), of the bytes
  ``<timestamp>.<body>`` (the timestamp header, a dot, then the raw body);
* ``Teamboard-Delivery``: the delivery id (redeliveries have their own),
  ``Teamboard-Event``: the event kind, ``Teamboard-Webhook``: the webhook id.

A receiver recomputes the HMAC over the raw body it received, compares in constant time,
and rejects timestamps further than a tolerance (5 minutes by default) from its clock:
a captured request cannot be replayed later. Within the tolerance, the delivery id (or the
event id in the body) tells repeats apart. :func:`verify` does all of it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Teamboard-Signature"
TIMESTAMP_HEADER = "Teamboard-Timestamp"
DELIVERY_HEADER = "Teamboard-Delivery"
EVENT_HEADER = "Teamboard-Event"
WEBHOOK_HEADER = "Teamboard-Webhook"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Teamboard-Signature`` value for one attempt."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(
    secret: str,
    header: str,
    timestamp: str,
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether a delivery is authentic and fresh (for receivers, and the tests)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, sent, body), header.strip())
