"""Support for the Schemathesis suite: a seeded world, path filling, and the peer check.

The world is two teams built through the API: team A (``alice`` owner, ``carol`` member)
with a project, its statuses, labels, tasks, a comment, a time entry, an invitation, an API
key, a webhook and an attachment; team B (``bob`` owner, alice's peer) with a project of its
own. Schemathesis generates requests as alice; :func:`fill_from_seed` points their path
parameters at team A's rows (or leaves them random, which exercises "missing"), and
:class:`PeerCheck` replays each of alice's successes as bob.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import requests
from hypothesis import strategies as st
from psycopg import sql
from schemathesis import Case, CheckContext, Response
from schemathesis.core.parameters import ParameterLocation

from tests.conftest import Actor, add_member

API = "/api/v1"
MISSING_KEY = "ZZZ-987654"
Owner = psycopg.Connection[dict[str, Any]]


@dataclass
class World:
    """Team A's seeded ids by path-parameter name, and the two peers."""

    alice: Actor
    bob: Actor
    team_b: str
    ids: dict[str, str] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)

    @property
    def team_a(self) -> str:
        return self.ids["team_id"]

    def identifiers(self) -> set[str]:
        """Values that are team A's own: seen by bob, they are a leak."""
        return {value for name, value in self.ids.items() if name != "key"} | self.secrets

    def missing(self, keep: set[str]) -> dict[str, str]:
        """Team A's ids (but ``keep``) mapped to ids of the same shape that exist nowhere."""
        return {
            value: MISSING_KEY if name == "key" else str(uuid.uuid4())
            for name, value in self.ids.items()
            if value not in keep
        }


def _created(response: requests.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def seed(api: requests.Session, alice: Actor, bob: Actor, carol: Actor, owner: Owner) -> World:
    """Build both teams through the API (see the module docstring)."""

    def post(path: str, actor: Actor = alice, **kwargs: Any) -> dict[str, Any]:
        headers = {**actor.headers, **kwargs.pop("headers", {})}
        return _created(api.post(f"{API}{path}", headers=headers, **kwargs))

    team = post("/teams", json={"name": f"Seed A {uuid.uuid4().hex[:8]}"})["id"]
    team_b = post("/teams", bob, json={"name": "Seed B"})["id"]
    add_member(owner, uuid.UUID(team), carol, "member")
    post(f"/teams/{team_b}/projects", bob, json={"key": "OPS", "name": "Ops"})
    world = World(alice, bob, team_b, ids={"team_id": team, "user_id": str(carol.id)})
    world.secrets |= {alice.email, carol.email}
    base = f"/teams/{team}"
    project = post(f"{base}/projects", json={"key": "ENG", "name": "Engineering"})["id"]
    statuses = _created(api.get(f"{API}{base}/projects/{project}/statuses", headers=alice.headers))
    label = post(f"{base}/projects/{project}/labels", json={"name": "bug", "color": "#336699"})
    task = post(
        f"{base}/projects/{project}/tasks",
        json={"title": "Seeded task", "label_ids": [label["id"]], "assignee_ids": [str(carol.id)]},
    )
    post(f"{base}/projects/{project}/tasks", json={"title": "Child", "parent_id": task["id"]})
    comment = post(f"{base}/tasks/{task['id']}/comments", json={"body": "seeded comment"})
    started = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    entry = post(
        f"{base}/tasks/{task['id']}/time-entries",
        json={"started_at": started, "duration_seconds": 600, "note": "seeded"},
    )
    invitation = post(f"{base}/invitations", json={"email": "invitee@example.com"})
    key = post(f"{base}/api-keys", json={"name": "seed", "scopes": ["read"]})
    webhook = post(
        f"{base}/webhooks", json={"url": "http://127.0.0.1:9/hook", "kinds": ["task.created"]}
    )
    attachment = post(
        f"{base}/tasks/{task['id']}/attachments",
        params={"filename": "notes.txt"},
        data=b"seeded attachment",
        headers={"Content-Type": "text/plain"},
    )
    world.ids |= {
        "project_id": project,
        "status_id": statuses["items"][0]["id"],
        "label_id": label["id"],
        "task_id": task["id"],
        "key": f"ENG-{task['number']}",
        "comment_id": comment["id"],
        "entry_id": entry["id"],
        "invitation_id": invitation["id"],
        "key_id": key["id"],
        "webhook_id": webhook["id"],
        "attachment_id": attachment["id"],
    }
    world.secrets |= {key["token"], webhook.get("secret", key["token"])}
    return world


def fill_from_seed(world: World, case: Case) -> st.SearchStrategy[Case]:
    """The case as generated, with its team filled from the seed, or with every path
    parameter the seed knows filled: random ids stay in the mix, they exercise "missing".

    A case whose path was mutated on purpose (negative mode) is left as generated.
    """
    known = {name: world.ids[name] for name in case.path_parameters or {} if name in world.ids}
    if not known or (case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH)):
        return st.just(case)

    generated = dict(case.path_parameters)

    def fill(names: tuple[str, ...]) -> Case:
        # In place: every example draws a case of its own, and Case does not copy.
        case.path_parameters = {**generated, **{n: known[n] for n in names}}
        return case

    team_only = tuple(name for name in known if name == "team_id")
    return st.sampled_from([(), team_only, tuple(known), tuple(known)]).map(fill)


def _replaced(value: Any, mapping: dict[str, str]) -> Any:
    """``value`` with every string in ``mapping`` replaced, recursively."""
    if isinstance(value, str):
        for old, new in mapping.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, bytes):
        return _replaced(value.decode("utf-8", "surrogateescape"), mapping).encode(
            "utf-8", "surrogateescape"
        )
    if isinstance(value, dict):
        return {k: _replaced(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, mapping) for v in value]
    return value


def _problem_code(response: requests.Response) -> str | None:
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return None
    code = response.json().get("code")
    return str(code) if code is not None else None


def _without_echo(response: requests.Response) -> str:
    """The body without the problem's ``instance`` (it echoes the path that was sent)."""
    if _problem_code(response) is None:
        return response.text
    body = response.json()
    body.pop("instance", None)
    return json.dumps(body)


class SchemaValidRefused(AssertionError):
    """The request validator refused a request the OpenAPI document says is valid."""


def caller_headers(case: Case, world: World) -> dict[str, str]:
    """Alice's credentials for ``case``, unless Schemathesis broke its headers on purpose (a
    negative header component: ``Authorization`` removed or malformed among them), which
    adding hers would repair into a valid request that is then, rightly, accepted."""
    headers = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    if headers is not None and headers.mode.is_negative:
        return {}
    return world.alice.headers


def _too_short_once_stripped(case: Case, response: Response) -> bool:
    """Scoped exception: text is stripped of surrounding whitespace before its length is
    checked (``strip_whitespace``), which JSON Schema's ``minLength`` cannot state; only
    when every error is such a field, sent with surrounding whitespace."""
    if response.status_code != 422 or not isinstance(case.body, dict):
        return False
    errors = response.json().get("errors") or [{}]
    return all(
        error.get("type") == "string_too_short"
        and isinstance(value := case.body.get(error.get("field")), str)
        and value != value.strip()
        for error in errors
    )


def schema_valid_is_valid(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A positive case never gets ``validation_failed``: the document and the validator agree
    (business-rule refusals carry codes of their own; see ``positive_data_acceptance``)."""
    if case.meta is None or case.meta.generation.mode.is_negative:
        return None
    # Scoped exception: email-validator refuses special-use domains (RFC 6761: .test,
    # .local...) that JSON Schema's ``format: email`` cannot exclude.
    if "special-use or reserved name" in response.text:
        return None
    # Scoped exception: a custom event's ``properties`` is any JSON object, but PostgreSQL's
    # jsonb cannot store U+0000 nor (usefully) integers beyond 64 bits, so those are refused
    # (a schema of any JSON object cannot say so).
    if case.formatted_path.endswith("/events") and (
        "cannot contain NUL" in response.text or "64-bit integers" in response.text
    ):
        return None
    if _too_short_once_stripped(case, response):
        return None
    if response.status_code == 422 and "validation_failed" in response.text:
        raise SchemaValidRefused(f"{case.method} {case.formatted_path}: {response.text[:500]}")
    return True


class ObjectLevelAuthorizationViolation(AssertionError):
    """Bob, a peer in another team, got something other than "missing" for alice's data."""


@dataclass(eq=False)  # hashable: Schemathesis keeps checks in sets
class PeerCheck:
    """``object_level_authorization`` with two peer identities, as a Schemathesis check.

    For every request alice (owner of team A) made successfully, the same request is sent
    as bob (owner of team B) twice: once as is, and once with team A's id replaced by team
    B's (alice's object ids inside bob's own team). Each must get exactly what bob gets for a
    **missing** resource, the same request with all of team A's ids replaced by fresh random
    ones: the same status and problem ``code``; bob's response must hold none of team A's
    identifiers, and a write by bob must leave every row of team A unchanged.
    """

    __name__ = "object_level_authorization_peers"  # how Schemathesis names a check

    world: World
    api: Callable[[], requests.Session]
    snapshot: Callable[[], str]
    replays: int = 0

    def __call__(self, ctx: CheckContext, response: Response, case: Case) -> bool | None:
        if not 200 <= response.status_code < 300 or case.operation.path.startswith("/health"):
            return None
        sent = case.as_transport_kwargs(headers=self.world.bob.headers)
        sent.pop("base_url", None)
        team_a, team_b = self.world.team_a, self.world.team_b
        for variant in ({}, {team_a: team_b}):
            request = _replaced(sent, variant)
            # Without any of team A's ids left there is no "missing" to compare with.
            if any(value in json.dumps(request, default=repr) for value in self.world.ids.values()):
                self._compare(case, request, sent_as=variant)
        return True

    def _compare(self, case: Case, request: dict[str, Any], sent_as: dict[str, str]) -> None:
        ids = self.world.identifiers() - set(sent_as.values())
        missing = _replaced(request, self.world.missing(keep=set(sent_as.values())))
        write = case.method.upper() not in ("GET", "HEAD", "OPTIONS")
        before = self.snapshot() if write else ""
        peer = self._send(request)
        after = self.snapshot() if write else ""
        reference = self._send(missing)
        self.replays += 1
        label = f"{case.method.upper()} {request['url']} (as bob)"
        if (peer.status_code, _problem_code(peer)) != (
            reference.status_code,
            _problem_code(reference),
        ):
            raise ObjectLevelAuthorizationViolation(
                f"{label}: {peer.status_code} {_problem_code(peer)} where a missing resource "
                f"gets {reference.status_code} {_problem_code(reference)}\n{peer.text[:500]}"
            )
        seen = _without_echo(peer)
        leaked = sorted(value for value in ids if value in seen)
        if leaked:
            raise ObjectLevelAuthorizationViolation(f"{label} shows team A's {leaked}: {seen}")
        if before != after:
            raise ObjectLevelAuthorizationViolation(f"{label} changed team A's rows")

    def _send(self, request: dict[str, Any]) -> requests.Response:
        request = {**request, "headers": {**(request.get("headers") or {})}}
        request["headers"].pop("Idempotency-Key", None)
        return self.api().request(**request)


def team_snapshot(owner: Owner, team_id: str) -> Callable[[], str]:
    """A digest of every row of the team, in every table with a ``team_id`` (and the team)."""
    tables = [
        row["relname"]
        for row in owner.execute(
            "select c.relname from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'"
            " join pg_attribute a on a.attrelid = c.oid and a.attname = 'team_id'"
            " where c.relkind in ('r', 'p') and not c.relispartition order by c.relname"
        ).fetchall()
    ]
    parts = [
        sql.SQL(
            "(select md5(coalesce(string_agg(t::text, ',' order by t::text), ''))"
            " from {} t where team_id = %(team)s)"
        ).format(sql.Identifier(name))
        for name in tables
    ]
    parts.append(sql.SQL("(select md5(t::text) from team t where id = %(team)s)"))
    query = sql.SQL("select md5(concat_ws(',', {})) as digest").format(sql.SQL(", ").join(parts))

    def digest() -> str:
        row = owner.execute(query, {"team": team_id}).fetchone()
        assert row is not None
        return str(row["digest"])

    return digest
