"""The world of the isolation fuzzer: three teams, their callers, and what each team owns.

Every team gets an owner, a member, a guest (added to one project) and an API key, and one
object of every kind the API creates (projects, tasks, statuses, labels, comments,
attachments, time entries, webhooks and their deliveries, notifications) plus a signed list
cursor. Every text the world writes carries the team's *marker*, so that a leaked title or
body is found by a substring search, and every id is known by team, so that a leaked id is
found in any body, GraphQL result or SSE frame.

The digests read every tenant table through the ``owner`` connection (found in the
catalog, so a new table joins by itself): a write aimed at another team must leave them
identical.
"""

from __future__ import annotations

import base64
import functools
import re
import secrets
import string
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from psycopg import sql

from tests.collab import add_to_project, create_project, post_comment
from tests.conftest import Actor

API = "/api/v1"
Owner = psycopg.Connection[dict[str, Any]]
ROLES = ("owner", "member", "guest", "key")
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A column that reads write on purpose (an API key's use is recorded once a minute).
READ_STAMPS = ("last_used_at",)


def random_key() -> str:
    """A project key no other team uses (searched for, like markers, in other teams' answers:
    it names the project and prefixes its task keys)."""
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(8))


def random_cursor() -> str:
    """A well-formed cursor that no list ever signed (the "missing" twin of a cursor)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).decode().rstrip("=")


@dataclass
class Team:
    """One team: its callers by role, its pools of ids by kind, and its marker."""

    id: uuid.UUID
    marker: str
    actors: dict[str, Actor]
    pools: dict[str, list[str]]
    cursor: str
    feed_task: uuid.UUID  # the sentinel task of the feed project (never fuzzed)

    def ids(self, pick: int) -> dict[str, str]:
        """One id of every kind (``pick`` chooses among the pool), as route templates use."""
        chosen = {kind: pool[pick % len(pool)] for kind, pool in self.pools.items() if pool}
        return {"team": str(self.id), "cursor": self.cursor, "q": self.marker, **chosen}

    def project_keys(self) -> set[str]:
        """The keys of the projects the world made (fuzzed creations reuse ``NEW``)."""
        return {key.rsplit("-", 1)[0] for key in self.pools["key"]}

    def remember(self, kind: str, value: Any) -> None:
        pool = self.pools.setdefault(kind, [])
        if str(value) not in pool:
            pool.append(str(value))


def missing_twin(ids: dict[str, str]) -> dict[str, str]:
    """The same placeholders, each with a value that exists nowhere."""
    twin = {name: str(uuid.uuid4()) for name in ids}
    twin |= {"key": f"{random_key()}-1", "cursor": random_cursor(), "q": _marker()}
    return {name: twin[name] for name in ids}


def _marker() -> str:
    return f"mk{secrets.token_hex(8)}"


async def build_team(
    client: httpx.AsyncClient,
    owner: Owner,
    make_user: Callable[..., Actor],
    make_team: Callable[..., Awaitable[uuid.UUID]],
) -> Team:
    """A team with one object of every kind, all named after the team's marker."""
    marker = _marker()
    alice, bob, gina = make_user(marker), make_user(marker), make_user(marker)
    team_id = await make_team(alice, members=[(bob, "member"), (gina, "guest")])
    key = await _post(client, alice, f"{API}/teams/{team_id}/api-keys", {"name": f"{marker} key"})
    actors = {
        "owner": alice,
        "member": bob,
        "guest": gina,
        "key": Actor(alice.id, alice.email, "", {"Authorization": f"Bearer {key['token']}"}),
    }
    shared = await create_project(client, alice, team_id, random_key())
    private = await create_project(client, alice, team_id, random_key(), "private")
    feed = await create_project(client, alice, team_id, random_key())
    for project in (shared, feed):
        await add_to_project(client, alice, team_id, project, gina)
    team = Team(team_id, marker, actors, {}, "", uuid.UUID(int=0))
    team.pools["user"] = [str(alice.id), str(bob.id), str(gina.id)]
    team.pools["key_id"] = [key["id"]]
    invited = await _post(
        client, alice, f"{API}/teams/{team_id}/invitations", {"email": f"{marker}@example.com"}
    )
    team.pools["invitation"] = [invited["id"]]
    for project in (shared, private):
        await _fill_project(client, owner, team, project)
    team.feed_task = uuid.UUID(
        (await _post(client, alice, _tasks(team_id, feed), {"title": f"{marker} feed"}))["id"]
    )
    listed = await client.get(f"{API}/teams/{team_id}/tasks?limit=1", headers=alice.headers)
    team.cursor = listed.json()["next_cursor"]
    assert team.cursor, listed.text
    hook = await _post(
        client,
        alice,
        f"{API}/teams/{team_id}/webhooks",
        {"url": f"https://93.184.215.14/{marker}", "kinds": ["*"]},
    )
    team.remember("webhook", hook["id"])
    delivery = uuid.uuid4()
    owner.execute(
        "insert into webhook_delivery (team_id, id, webhook_id, event_id, event_occurred_at,"
        " event_kind, status, next_attempt_at, completed_at)"
        " values (%s, %s, %s, %s, now(), 'team.created', 'failed', null, now())",
        (team_id, delivery, hook["id"], uuid.uuid4()),
    )
    team.remember("delivery", delivery)
    return team


async def _fill_project(client: httpx.AsyncClient, owner: Owner, team: Team, project: Any) -> None:
    """A task with a comment, an attachment, a time entry and a notification; a label."""
    alice, marker = team.actors["owner"], team.marker
    team_id = team.id
    base = f"{API}/teams/{team_id}"
    task = await _post(client, alice, _tasks(team_id, project), {"title": f"{marker} task"})
    label = await _post(
        client,
        alice,
        f"{base}/projects/{project}/labels",
        {"name": f"{marker} label", "color": "#ff0000"},
    )
    comment = await post_comment(client, alice, team_id, task["id"], f"{marker} comment")
    entry = await _post(
        client,
        alice,
        f"{base}/tasks/{task['id']}/time-entries",
        {"started_at": "2026-01-02T09:00:00Z", "duration_seconds": 60, "note": marker},
    )
    uploaded = await client.post(
        f"{base}/tasks/{task['id']}/attachments",
        params={"filename": f"{marker}.txt"},
        content=marker.encode(),
        headers={**alice.headers, "Content-Type": "text/plain"},
    )
    assert uploaded.status_code == 201, uploaded.text
    notification = uuid.uuid4()
    owner.execute(
        "insert into notification (team_id, id, recipient_id, kind, task_id, project_id,"
        " actor_id) values (%s, %s, %s, 'assigned', %s, %s, %s)",
        (team_id, notification, alice.id, task["id"], project, alice.id),
    )
    for kind, value in (
        ("project", project),
        ("task", task["id"]),
        ("key", task["key"]),
        ("status", task["status_id"]),
        ("label", label["id"]),
        ("comment", comment["id"]),
        ("entry", entry["id"]),
        ("attachment", uploaded.json()["id"]),
        ("notification", notification),
    ):
        team.remember(kind, value)


def _tasks(team: uuid.UUID, project: Any) -> str:
    return f"{API}/teams/{team}/projects/{project}/tasks"


async def _post(
    client: httpx.AsyncClient, actor: Actor, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# --------------------------------------------------------------------------- leaks


@dataclass
class Secrets:
    """What each team owns, read from the database (every id of every tenant row)."""

    owner: Owner
    teams: list[Team]
    _ids: dict[uuid.UUID, set[str]] = field(default_factory=dict)
    stale: bool = True

    def refresh(self) -> None:
        """Read every team's ids again (after a write: creations add rows)."""
        ids: dict[uuid.UUID, set[str]] = {team.id: {str(team.id)} for team in self.teams}
        for team in self.teams:
            ids[team.id] |= set(team.pools["user"])  # members have no row id of their own
        query = sql.SQL(" union all ").join(
            sql.SQL("select team_id, id::text as id from {} where team_id = any(%(teams)s)").format(
                sql.Identifier(table)
            )
            for table in tenant_tables(self.owner, with_id=True)
        )
        for row in self.owner.execute(query, {"teams": list(ids)}):
            ids[row["team_id"]].add(row["id"])
        self._ids, self.stale = ids, False

    def leaks(self, team: Team, text: str) -> list[str]:
        """Another team's ids and markers found in ``text`` (seen by a caller of ``team``)."""
        if self.stale:
            self.refresh()
        foreign = [other for other in self.teams if other.id != team.id]
        found = [other.marker for other in foreign if other.marker in text]
        found += [key for other in foreign for key in other.project_keys() if key in text]
        mentioned = set(UUID_TEXT.findall(text))
        for other in foreign:
            found += sorted(mentioned & self._ids[other.id])
            found += [other.cursor] if other.cursor in text else []
        return found


@functools.cache
def tenant_tables(owner: Owner, *, with_id: bool = False) -> list[str]:
    """Tables with a ``team_id`` (partitions left out: their parent reads them); the schema
    does not change during a run."""
    rows = owner.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition"
        " and exists (select from pg_attribute a where a.attrelid = c.oid"
        "   and a.attname = 'team_id' and not a.attisdropped)"
        " and (not %s or exists (select from pg_attribute a where a.attrelid = c.oid"
        "   and a.attname = 'id' and not a.attisdropped))"
        " order by 1",
        (with_id,),
    ).fetchall()
    return [row["relname"] for row in rows]


def digest(owner: Owner, teams: Iterable[uuid.UUID]) -> dict[tuple[str, uuid.UUID], str]:
    """A fingerprint of every row of every tenant table of ``teams`` (and of the teams)."""
    parts = [
        sql.SQL(
            "select {name} as tbl, t.team_id, md5(string_agg((to_jsonb(t) - %(stamps)s)::text,"
            " '|' order by (to_jsonb(t) - %(stamps)s)::text)) as sum"
            " from {table} t where t.team_id = any(%(teams)s) group by t.team_id"
        ).format(name=sql.Literal(table), table=sql.Identifier(table))
        for table in tenant_tables(owner)
    ]
    parts.append(
        sql.SQL(
            "select 'team', t.id, md5(to_jsonb(t)::text) from team t where t.id = any(%(teams)s)"
        )
    )
    rows = owner.execute(
        sql.SQL(" union all ").join(parts), {"teams": list(teams), "stamps": list(READ_STAMPS)}
    ).fetchall()
    return {(row["tbl"], row["team_id"]): row["sum"] for row in rows}
