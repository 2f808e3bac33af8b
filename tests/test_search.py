"""Search through the REST API: ranking, prefixes, typos, visibility, hostile input, pages."""

from __future__ import annotations

import importlib.util
import itertools
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import create_engine

import teamboard.migrations
from teamboard.ops.database import DatabaseUrls
from teamboard.search.query import MAX_QUERY_LENGTH, MAX_TERMS, normalize, to_tsquery_text
from teamboard.search.repository import search_sql
from tests.collab import (
    API,
    Owner,
    add_to_project,
    create_project,
    create_task,
    post_comment,
    statement_counts,
    walk,
)
from tests.conftest import Actor

MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


def search_path(team: uuid.UUID) -> str:
    return f"{API}/teams/{team}/search"


async def search(
    client: httpx.AsyncClient, actor: Actor, team: uuid.UUID, q: str, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(search_path(team), params={"q": q, **params}, headers=actor.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def has_trigram(owner: Owner) -> bool:
    return (
        owner.execute("select 1 from pg_extension where extname = 'pg_trgm'").fetchone() is not None
    )


def collab_migration() -> ModuleType:
    path = Path(teamboard.migrations.__file__).parent / "versions" / "2026-11-22_collab.py"
    spec = importlib.util.spec_from_file_location("collab_migration", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- query text


def test_user_text_becomes_a_safe_prefix_query() -> None:
    assert to_tsquery_text("Deploy pipe") == "'deploy' & 'pipe':*"
    assert to_tsquery_text("a'b\\c:*d & !e | (f) <-> g") == (
        "'a' & 'b' & 'c' & 'd' & 'e' & 'f' & 'g':*"
    )
    assert to_tsquery_text("snake_case déjà 日本") == "'snake' & 'case' & 'déjà' & '日本':*"
    assert to_tsquery_text("!!! ---") == ""
    assert to_tsquery_text(" ".join(f"w{i}" for i in range(40))).count("&") == MAX_TERMS - 1
    assert normalize("  tab\there\x00nul\n ") == "tab here nul"


# --------------------------------------------------------------------------- ranking


async def test_title_outranks_description_outranks_comment(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    project = await create_project(client, alice, team, "RNK")
    in_comment = await create_task(app, alice, team, project, "Misc chores")
    await post_comment(client, alice, team, in_comment, "see the roadmap draft")
    in_description = await create_task(app, alice, team, project, "Planning", "the roadmap 2027")
    in_title = await create_task(app, alice, team, project, "Quarterly roadmap")
    await create_task(app, alice, team, project, "Kitchen duty")

    for q in ("roadmap", "ROADMAP", "roadm", "road"):
        hits = await search(client, alice, team, q)
        assert [h["id"] for h in hits] == [str(in_title), str(in_description), str(in_comment)], q
    top, middle, bottom = await search(client, alice, team, "roadmap")
    assert "task" in top["matched"]
    assert "task" in middle["matched"]
    assert bottom["matched"] == ["comment"]
    assert top["score"] > middle["score"] > bottom["score"]
    assert top["ref"].startswith("RNK-")
    assert top["title"] == "Quarterly roadmap"
    assert top["project_id"] == str(project)

    # Every word must match, the last one as a prefix only.
    assert [h["id"] for h in await search(client, alice, team, "roadmap quart")] == [str(in_title)]
    exact_only = await search(client, alice, team, "roadm quarterly")
    assert str(in_description) not in [h["id"] for h in exact_only]
    assert all("task" not in h["matched"] for h in exact_only)


async def test_typos_match_titles_when_trigrams_are_available(
    client: httpx.AsyncClient, app: Any, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    project = await create_project(client, alice, team, "TYP")
    task = await create_task(app, alice, team, project, "Quarterly roadmap")
    exact = await create_task(app, alice, team, project, "Roadmpa is how Bob spells it")
    hits = await search(client, alice, team, "roadmpa")
    if not has_trigram(owner):
        assert [h["id"] for h in hits] == [str(exact)]
        pytest.skip("pg_trgm is not installed on this server: full-text only")
    assert [h["id"] for h in hits] == [str(exact), str(task)], "exact words first"
    assert hits[1]["matched"] == ["similar_title"]
    assert hits[1]["score"] <= 0.1


def test_without_trigrams_search_falls_back_to_full_text(
    owner: Owner, db_urls: DatabaseUrls, make_user: MakeUser
) -> None:
    """The migration's fallback (what servers without pg_trgm get) answers no similar titles,
    and search keeps working: run on this server with the fallback swapped in, rolled back."""
    migration = collab_migration()
    alice = make_user("alice")
    team, project, status, task = (uuid.uuid4() for _ in range(4))
    owner.execute("insert into team (id, name, created_by) values (%s, 't', %s)", (team, alice.id))
    owner.execute(
        "insert into team_member (team_id, user_id, role) values (%s, %s, 'owner')",
        (team, alice.id),
    )
    owner.execute(
        "insert into project (team_id, id, key, name, created_by) values (%s, %s, 'FB', 'f', %s)",
        (team, project, alice.id),
    )
    owner.execute(
        "insert into status (team_id, id, project_id, name, category, position)"
        " values (%s, %s, %s, 'Todo', 'unstarted', 1)",
        (team, status, project),
    )
    owner.execute(
        "insert into task (team_id, id, project_id, number, title, status_id, created_by)"
        " values (%s, %s, %s, 1, 'Quarterly roadmap', %s, %s)",
        (team, task, project, status, alice.id),
    )

    def found(q: str) -> list[uuid.UUID]:
        params = {"text": q, "tsquery": to_tsquery_text(q)}
        statement = search_sql(after=False, rows=10)
        return [row["id"] for row in owner.execute(statement, params).fetchall()]

    with owner.transaction(force_rollback=True):
        owner.execute("drop function tb_similar_task_titles(text)")
        owner.execute(migration.similar_titles_sql(None))
        owner.execute(
            sql.SQL("grant execute on function tb_similar_task_titles(text) to {}").format(
                sql.Identifier(db_urls.app_role)
            )
        )
        owner.execute(sql.SQL("set local role {}").format(sql.Identifier(db_urls.app_role)))
        owner.execute(
            "select set_config('app.user_id', %s, true), set_config('app.team_id', %s, true)",
            (str(alice.id), str(team)),
        )
        assert found("roadmap") == [task]
        assert found("quarterly road") == [task]
        assert found("roadmpa") == []
    if has_trigram(owner):
        with owner.transaction(force_rollback=True):
            owner.execute(sql.SQL("set local role {}").format(sql.Identifier(db_urls.app_role)))
            owner.execute(
                "select set_config('app.user_id', %s, true), set_config('app.team_id', %s, true)",
                (str(alice.id), str(team)),
            )
            assert found("roadmpa") == [task], "the installed function does match typos"


def test_migration_detects_the_trigram_extension(db_urls: DatabaseUrls, owner: Owner) -> None:
    migration = collab_migration()
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(db_urls.owner))
    try:
        with engine.begin() as conn:
            available = conn.exec_driver_sql(
                "select exists (select 1 from pg_available_extensions where name = 'pg_trgm')"
            ).scalar()
            schema = migration.trigram_schema(conn)
            assert (schema is not None) == bool(available) == has_trigram(owner)
            if schema is not None:
                assert schema == "public"
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- visibility


async def test_search_respects_visibility_and_deletion(
    client: httpx.AsyncClient, app: Any, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, member, guest = make_user("alice"), make_user("member"), make_user("guest")
    team = await make_team(alice, members=[(member, "member"), (guest, "guest")])
    public = await create_project(client, alice, team, "VPU")
    private = await create_project(client, alice, team, "VPR", "private")
    guests = await create_project(client, alice, team, "VGU")
    await add_to_project(client, alice, team, guests, guest)
    open_task = await create_task(app, alice, team, public, "zephyr public")
    secret = await create_task(app, alice, team, private, "zephyr secret")
    commented = await create_task(app, alice, team, private, "unrelated")
    await post_comment(client, alice, team, commented, "zephyr in a private comment")
    guest_task = await create_task(app, alice, team, guests, "zephyr for guests")
    deleted = await create_task(app, alice, team, public, "zephyr deleted")
    owner.execute("update task set deleted_at = now() where id = %s", (deleted,))
    dropped = await create_task(app, alice, team, public, "other")
    comment = await post_comment(client, alice, team, dropped, "zephyr comment later deleted")
    removed = await client.delete(
        f"{API}/teams/{team}/tasks/{dropped}/comments/{comment['id']}", headers=alice.headers
    )
    assert removed.status_code == 204

    def ids(hits: list[dict[str, Any]]) -> set[str]:
        return {h["id"] for h in hits}

    assert ids(await search(client, alice, team, "zephyr")) == {
        str(open_task),
        str(secret),
        str(commented),
        str(guest_task),
    }
    assert ids(await search(client, member, team, "zephyr")) == {str(open_task), str(guest_task)}
    assert ids(await search(client, guest, team, "zephyr")) == {str(guest_task)}

    outsider = make_user("outsider")
    response = await client.get(search_path(team), params={"q": "zephyr"}, headers=outsider.headers)
    assert response.status_code == 404


# --------------------------------------------------------------------------- input


HOSTILE = [
    "'",
    "''",
    "\\",
    "\\'",
    ":*",
    "a:*",
    "&",
    "a & | b",
    "!",
    "!!a",
    "(",
    "a)(",
    "<->",
    "a <2> b",
    '"unterminated',
    "' or 1=1 --",
    "%",
    "%%s %(x)s",
    "$1",
    "\x00",
    "a\x00b",
    "\x1b[31m",
    "🙂",
    "日本語のテキスト",
    "Ω≈ç√∫",
    "-",
    "_",
    "x" * MAX_QUERY_LENGTH,
    " ".join(["word"] * 60)[:MAX_QUERY_LENGTH],
    "a " * (MAX_QUERY_LENGTH // 2),
]


async def test_hostile_queries_never_fail(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    task = await create_task(
        app, alice, team, await create_project(client, alice, team, "HOS"), "a b word"
    )
    for q in HOSTILE:
        response = await client.get(search_path(team), params={"q": q}, headers=alice.headers)
        assert response.status_code in (200, 422), (q, response.text)
        if response.status_code == 422:
            assert q.strip("\x00\x1b ") == "", q  # only blank queries are refused
            assert response.json()["code"] == "empty_query"
    found = await search(client, alice, team, "a\x00b")
    assert str(task) in {h["id"] for h in found}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "validation_failed"),
        ({"q": ""}, "validation_failed"),
        ({"q": "x" * (MAX_QUERY_LENGTH + 1)}, "validation_failed"),
        ({"q": "   "}, "empty_query"),
        ({"q": "\x00\n"}, "empty_query"),
        ({"q": "ok", "limit": 0}, "validation_failed"),
        ({"q": "ok", "limit": 201}, "validation_failed"),
    ],
)
async def test_invalid_queries_are_422(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    make_team: MakeTeam,
    params: dict[str, Any],
    code: str,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    response = await client.get(search_path(team), params=params, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code


# --------------------------------------------------------------------------- pages


async def test_pages_are_stable_and_cursors_bound_to_the_query(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    project = await create_project(client, alice, team, "SPG")
    for i in range(4):
        await create_task(app, alice, team, project, f"nebula {i}")  # equal scores: id breaks ties
    described = await create_task(app, alice, team, project, "other", "nebula")
    commented = await create_task(app, alice, team, project, "third")
    await post_comment(client, alice, team, commented, "nebula")

    everything = await search(client, alice, team, "nebula")
    assert len(everything) == 6
    assert [h["id"] for h in everything[-2:]] == [str(described), str(commented)]
    for before, after in itertools.pairwise(everything):
        # Score descending, then id descending (uuid order is the order of their text).
        assert (before["score"], before["id"]) > (after["score"], after["id"])
    paged = await walk(client, alice, search_path(team), limit=2, q="nebula")
    assert paged == everything
    small, large = await statement_counts(client, alice, search_path(team), q="nebula")
    assert small == large == 2

    page = await client.get(
        search_path(team), params={"q": "nebula", "limit": 2}, headers=alice.headers
    )
    cursor = page.json()["next_cursor"]
    same_query = await client.get(
        search_path(team),
        params={"q": "  nebula ", "limit": 2, "cursor": cursor},
        headers=alice.headers,
    )
    assert same_query.status_code == 200, "the cursor is bound to the normalized query"
    for params in (
        {"q": "nebul", "cursor": cursor},
        {"q": "nebula", "cursor": cursor[:-4] + "AAAA"},
        {"q": "nebula", "cursor": "x"},
    ):
        response = await client.get(search_path(team), params=params, headers=alice.headers)
        assert response.status_code == 400, params
        assert response.json()["code"] == "invalid_cursor"
    other_team = await make_team(alice)
    foreign = await client.get(
        search_path(other_team), params={"q": "nebula", "cursor": cursor}, headers=alice.headers
    )
    assert foreign.status_code == 400
