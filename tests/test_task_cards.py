"""Task cards: ``key``, ``assignee_ids`` and ``labels`` kept on the task row by triggers,
and the list item (``summary``) written from the row.

Reads take the card from the row (no subquery per task), so it must equal what the link
tables say after every kind of write, through the API or not, and refreshing it must not
pass for an edit of the task (``updated_at`` stays).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import psycopg

from teamboard.ops.database import DatabaseUrls
from tests.dbsetup import stale_items
from tests.work import API, Board, Owner, board

__all__ = ["board"]  # the fixture, imported for this module

#: Tasks of a team whose card differs from its links (recomputed the slow way).
STALE_CARDS = """
select t.id, t.key, t.assignee_ids, t.labels::text from task t
join project p on p.team_id = t.team_id and p.id = t.project_id
where t.team_id = %(team)s and (
    t.key <> p.key || '-' || t.number
    or t.assignee_ids <> array(select a.user_id from task_assignee a where a.team_id = t.team_id
        and a.project_id = t.project_id and a.task_id = t.id order by a.user_id)
    or t.labels::jsonb <> coalesce((select json_agg(json_build_object('id', l.id,
        'name', l.name, 'color', l.color) order by lower(l.name), l.id)
        from task_label tl join label l on l.team_id = tl.team_id
        and l.project_id = tl.project_id and l.id = tl.label_id
        where tl.team_id = t.team_id and tl.project_id = t.project_id
        and tl.task_id = t.id), '[]'::json)::jsonb)
"""


def stale_cards(owner: Owner, team: uuid.UUID) -> list[dict[str, Any]]:
    """Cards that differ from the links, whose labels are not stored as the compact text a
    response writes, or whose stored list item is not the task's (they go out as stored)."""
    stale = list(owner.execute(STALE_CARDS, {"team": team}).fetchall())
    cards = owner.execute("select id, labels::text from task where team_id = %s", (team,))
    stale += [card for card in cards.fetchall() if card["labels"] != compact(card["labels"])]
    return stale + stale_items(owner, team)


def compact(text: str) -> str:
    return orjson.dumps(orjson.loads(text)).decode()


def updated_at(owner: Owner, task_id: str) -> Any:
    row = owner.execute("select updated_at from task where id = %s", (uuid.UUID(task_id),))
    found = row.fetchone()
    assert found is not None
    return found["updated_at"]


async def test_cards_follow_every_api_write(
    board: Board, owner: Owner, client: httpx.AsyncClient
) -> None:
    bug, ui = await board.label("bug", "#ff0000"), await board.label("UI")
    first = await board.create(assignee_ids=[str(board.bob.id)], label_ids=[ui, bug])
    second = await board.create(
        assignee_ids=[str(board.alice.id), str(board.bob.id)], label_ids=[bug]
    )
    third = await board.create(parent_id=first["id"])
    assert (first["key"], third["key"]) == ("ENG-1", "ENG-3")
    assert [label["name"] for label in first["labels"]] == ["bug", "UI"]
    assert second["assignee_ids"] == sorted([str(board.alice.id), str(board.bob.id)])
    assert stale_cards(owner, board.team) == []

    response = await board.patch(first["id"], {"assignee_ids": [str(board.alice.id)]})
    assert response.json()["assignee_ids"] == [str(board.alice.id)]
    response = await board.patch(second["id"], {"assignee_ids": [], "label_ids": [ui]})
    assert (response.json()["assignee_ids"], len(response.json()["labels"])) == ([], 1)
    renamed = await client.patch(
        f"{board.project_path}/labels/{ui}",
        json={"name": "interface", "color": "#00ff00"},
        headers=board.alice.headers,
    )
    assert renamed.status_code == 200, renamed.text
    deleted = await client.delete(f"{board.project_path}/labels/{bug}", headers=board.alice.headers)
    assert deleted.status_code == 204, deleted.text
    assert stale_cards(owner, board.team) == []

    expected = [{"id": ui, "name": "interface", "color": "#00ff00"}]
    assert (await board.get(first["id"])).json()["labels"] == expected
    listed = {item["id"]: item for item in (await board.list())["items"]}
    assert listed[second["id"]]["labels"] == expected
    assert listed[first["id"]]["assignee_ids"] == [str(board.alice.id)]

    gone = await client.delete(board.task_path(first["id"]), headers=board.alice.headers)
    assert gone.status_code == 204, gone.text
    back = await client.post(board.task_path(first["id"], "/restore"), headers=board.alice.headers)
    assert back.status_code == 200, back.text
    assert back.json()["labels"] == expected
    assert stale_cards(owner, board.team) == []


async def test_a_card_refresh_is_not_an_edit(
    board: Board, owner: Owner, client: httpx.AsyncClient
) -> None:
    label = await board.label("bug")
    task = await board.create(label_ids=[label])
    before = updated_at(owner, task["id"])
    renamed = await client.patch(
        f"{board.project_path}/labels/{label}", json={"name": "defect"}, headers=board.alice.headers
    )
    assert renamed.status_code == 200, renamed.text
    after = (await board.get(task["id"])).json()
    assert after["labels"][0]["name"] == "defect"
    assert (after["updated_at"], after["version"]) == (task["updated_at"], task["version"])
    assert updated_at(owner, task["id"]) == before

    # An edit still moves updated_at, also in a transaction that refreshed a card first.
    with owner.transaction():
        owner.execute(
            "insert into task_assignee (team_id, project_id, task_id, user_id)"
            " values (%s, %s, %s, %s)",
            (board.team, uuid.UUID(board.project), uuid.UUID(task["id"]), board.bob.id),
        )
        owner.execute(
            "update task set title = 'edited', updated_at = '2000-01-01' where id = %s",
            (uuid.UUID(task["id"]),),
        )
    assert updated_at(owner, task["id"]) > before
    assert stale_cards(owner, board.team) == []


async def test_cards_follow_writes_outside_the_api(board: Board, owner: Owner) -> None:
    """Statements of any shape (several tasks at once, cascades, a project's key) as the
    owner, who bypasses Row Level Security like the triggers themselves."""
    labels = [await board.label(name) for name in ("a", "B", "c")]
    tasks = [(await board.create(title=f"t{i}"))["id"] for i in range(4)]
    project_id = uuid.UUID(board.project)
    owner.execute(
        "insert into task_assignee (team_id, project_id, task_id, user_id)"
        " select %(team)s, %(project)s, t.id, u.id from unnest(%(tasks)s::uuid[]) t (id)"
        " cross join unnest(%(users)s::uuid[]) u (id)",
        {
            "team": board.team,
            "project": project_id,
            "tasks": tasks,
            "users": [board.alice.id, board.bob.id],
        },
    )
    owner.execute(
        "insert into task_label (team_id, project_id, task_id, label_id)"
        " select %(team)s, %(project)s, t.id, l.id from unnest(%(tasks)s::uuid[]) t (id)"
        " cross join unnest(%(labels)s::uuid[]) l (id)",
        {"team": board.team, "project": project_id, "tasks": tasks[:3], "labels": labels},
    )
    assert stale_cards(owner, board.team) == []
    card = (await board.get(tasks[0])).json()
    assert [label["name"] for label in card["labels"]] == ["a", "B", "c"]
    assert len(card["assignee_ids"]) == 2

    owner.execute("delete from task_assignee where user_id = %s", (board.bob.id,))
    owner.execute("update label set color = '#123456' where id = %s", (uuid.UUID(labels[1]),))
    owner.execute("delete from label where id = %s", (uuid.UUID(labels[0]),))
    owner.execute("update project set key = 'NEW' where id = %s", (project_id,))
    assert stale_cards(owner, board.team) == []
    card = (await board.get(tasks[0])).json()
    assert card["key"] == "NEW-1"
    assert card["labels"][0] == {"id": labels[1], "name": "B", "color": "#123456"}
    assert card["assignee_ids"] == [str(board.alice.id)]

    renumbered = await board.create(title="renumbered")
    owner.execute("update task set number = 90 where id = %s", (uuid.UUID(renumbered["id"]),))
    assert (await board.get(renumbered["id"])).json()["key"] == "NEW-90"
    assert stale_cards(owner, board.team) == []


def _two_writers(
    owner_url: str,
    first: list[tuple[str, tuple[Any, ...]]],
    second: list[tuple[str, tuple[Any, ...]]],
) -> None:
    """Run ``first`` in a transaction left open, then ``second`` in another one (which
    blocks on the first's locks) from a thread, commit the first, then the second."""
    with psycopg.connect(owner_url) as one, psycopg.connect(owner_url) as two:
        for statement, params in first:
            one.execute(statement, params)
        with ThreadPoolExecutor(1) as pool:
            later = pool.submit(_run_and_commit, two, second)
            time.sleep(0.3)  # the second writer is now waiting on the first one's locks
            assert not later.done()
            one.commit()
            later.result(timeout=10)


def _run_and_commit(
    conn: psycopg.Connection[Any], statements: list[tuple[str, tuple[Any, ...]]]
) -> None:
    for statement, params in statements:
        conn.execute(statement, params)
    conn.commit()


async def test_concurrent_writers_of_one_task_leave_an_exact_card(
    board: Board, owner: Owner, db_urls: DatabaseUrls
) -> None:
    task = uuid.UUID((await board.create(assignee_ids=[str(board.bob.id)]))["id"])
    project = uuid.UUID(board.project)
    assign = (
        "insert into task_assignee (team_id, project_id, task_id, user_id) values (%s, %s, %s, %s)"
    )
    # The edit path locks the task, then changes its links; a removal elsewhere (a member
    # leaving) changes the same task's links meanwhile.
    await asyncio.to_thread(
        _two_writers,
        db_urls.owner,
        [
            ("select 1 from task where id = %s for update", (task,)),
            (assign, (board.team, project, task, board.alice.id)),
        ],
        [("delete from task_assignee where task_id = %s and user_id = %s", (task, board.bob.id))],
    )
    assert stale_cards(owner, board.team) == []
    assert (await board.get(str(task))).json()["assignee_ids"] == [str(board.alice.id)]


async def test_a_label_attached_while_it_is_renamed_shows_the_new_name(
    board: Board, owner: Owner, db_urls: DatabaseUrls
) -> None:
    label = uuid.UUID(await board.label("bug"))
    task = uuid.UUID((await board.create())["id"])
    await asyncio.to_thread(
        _two_writers,
        db_urls.owner,
        [("update label set name = 'defect' where id = %s", (label,))],
        [
            (
                "insert into task_label (team_id, project_id, task_id, label_id)"
                " values (%s, %s, %s, %s)",
                (board.team, uuid.UUID(board.project), task, label),
            )
        ],
    )
    assert stale_cards(owner, board.team) == []
    assert (await board.get(str(task))).json()["labels"][0]["name"] == "defect"


async def test_responses_carry_the_card_as_stored(
    board: Board, owner: Owner, client: httpx.AsyncClient
) -> None:
    """Assignees, labels and the whole list item go out as PostgreSQL wrote them: the bytes
    must be what the encoder writes, whatever a label's name or a title holds (quotes,
    backslashes, control characters, non-ASCII, separators JavaScript treats as lines)."""
    names = ['say "hi"', "back\\slash", "tab\there", "ünïcødé 🚀", "</script>"]
    labels = [await board.label(name) for name in names]
    task = await board.create(
        assignee_ids=[str(board.bob.id), str(board.alice.id)], label_ids=labels
    )
    assert sorted(label["name"] for label in task["labels"]) == sorted(names)
    title = 'q"b\\t\tn\nc\x01\x1f\x7f \u2028\u2029 é 🚀 </script>'
    owner.execute("update task set title = %s where id = %s", (title, uuid.UUID(task["id"])))
    assert stale_cards(owner, board.team) == []
    listed = await client.get(board.tasks, headers=board.alice.headers)
    by_key = await client.get(
        f"{API}/teams/{board.team}/tasks/by-key/{task['key']}", headers=board.alice.headers
    )
    for response in (await board.get(task["id"]), listed, by_key):
        assert response.status_code == 200, response.text
        assert response.content == orjson.dumps(response.json())
        assert response.json().get("title", title) == title
    item = listed.json()["items"][0]
    assert item["title"] == title
    assert item["assignee_ids"] == sorted([str(board.alice.id), str(board.bob.id)])
    assert item["labels"] == task["labels"] == by_key.json()["labels"]
