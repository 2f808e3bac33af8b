"""Generated data sets for analytics and plans: ``teamboard seed --events N --teams T``.

Realistic in the ways that matter to the queries: team sizes are skewed (a few large teams
hold most of the events, many small ones little), activity grows over several years, tasks
go through a workflow (created, assigned, started, completed or canceled, sometimes
reopened), with comments and time entries, and a share of the events are ``custom.*``
events from a skewed population of external actors. Rows are consistent with each other
(every event names real tasks, statuses and members), so dashboards, lists and search plan
as they would in production.

Loaded with ``COPY`` as the owner (Row Level Security does not apply to it), one team per
transaction, each table's rows in key order so that B-tree inserts stay local. Generation
is deterministic for a given ``seed`` and ``now``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import psycopg

TIME_ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Asia/Tokyo")
WORKFLOW = (
    ("Backlog", "backlog"),
    ("Todo", "unstarted"),
    ("In progress", "started"),
    ("Done", "completed"),
    ("Canceled", "canceled"),
)
CUSTOM_KINDS = ("custom.page_view", "custom.feature_used", "custom.search", "custom.signup")
CUSTOM_WEIGHTS = (60, 25, 12, 3)
#: Share of the events that are custom analytics events.
CUSTOM_SHARE = 0.35
#: Events per task lifecycle on average (created, assigned, moves, comments, time).
EVENTS_PER_TASK = 6.5
WORDS = ("fix", "ship", "review", "login", "billing", "search", "index", "dashboard", "rls")
NO_PASSWORD = "!generated"  # noqa: S105 - not a hash: generated users cannot sign in

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class GeneratorConfig:
    events: int
    teams: int
    years: float = 3.0
    seed: int = 7
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Summary:
    teams: int = 0
    users: int = 0
    projects: int = 0
    tasks: int = 0
    comments: int = 0
    time_entries: int = 0
    events: int = 0


def team_shares(teams: int) -> list[float]:
    """Skewed team sizes: shares proportional to 1/rank^1.1, summing to 1."""
    weights = [1 / (rank + 1) ** 1.1 for rank in range(teams)]
    total = sum(weights)
    return [w / total for w in weights]


class _Ids:
    """UUIDv7 at a given instant (so rows of the same time sort together)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def at(self, when: datetime) -> UUID:
        ms = int(when.timestamp() * 1000) & ((1 << 48) - 1)
        r = self._rng.getrandbits(74)
        return UUID(int=ms << 80 | 7 << 76 | (r >> 62) << 64 | 2 << 62 | (r & ((1 << 62) - 1)))


def _ts(when: datetime) -> str:
    return when.isoformat()


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode().replace("\\", "\\\\")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


@dataclass
class _Team:
    """One team's rows, built in memory then copied."""

    id: UUID
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    next_numbers: dict[UUID, int] = field(default_factory=dict)

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.rows.setdefault(table, []).append(row)


COLUMNS: dict[str, Sequence[str]] = {
    "app_user": ("id", "email", "display_name", "password_hash", "created_at", "updated_at"),
    "team": ("id", "name", "created_by", "time_zone", "created_at", "updated_at"),
    "team_member": ("team_id", "user_id", "role", "created_at", "updated_at"),
    "project": (
        "team_id",
        "id",
        "key",
        "name",
        "visibility",
        "next_task_number",
        "created_by",
        "created_at",
        "updated_at",
    ),
    "project_member": ("team_id", "project_id", "user_id"),
    "status": ("team_id", "id", "project_id", "name", "category", "position"),
    "task": (
        "team_id",
        "id",
        "project_id",
        "number",
        "title",
        "status_id",
        "priority",
        "created_by",
        "created_at",
        "updated_at",
        "completed_at",
    ),
    "comment": ("team_id", "id", "task_id", "project_id", "author_id", "body", "created_at"),
    "time_entry": (
        "team_id",
        "id",
        "project_id",
        "task_id",
        "user_id",
        "started_at",
        "ended_at",
        "created_at",
    ),
    "event": (
        "team_id",
        "id",
        "occurred_at",
        "actor_id",
        "kind",
        "subject_id",
        "project_id",
        "payload",
    ),
}
#: Copy order: referenced tables first.
TABLES = tuple(COLUMNS)
#: Summary attribute of each counted table.
COUNTED = {
    "app_user": "users",
    "project": "projects",
    "task": "tasks",
    "comment": "comments",
    "time_entry": "time_entries",
    "event": "events",
}


class _TeamBuilder:
    """Builds one team: members, projects, workflow, tasks and their events."""

    def __init__(self, index: int, budget: int, config: GeneratorConfig, rng: random.Random):
        self.rng, self.ids, self.config = rng, _Ids(rng), config
        self.now = config.now
        self.budget = budget
        # Older teams for larger ones; every team is at least three months old.
        span = config.years * 365 * max(0.25, min(1.0, 0.3 + budget / 50_000))
        self.start = self.now - timedelta(days=span)
        self.team = _Team(self.ids.at(self.start))
        self.index = index

    def when(self) -> datetime:
        """A moment of the team's history, denser toward now (activity grows)."""
        span = (self.now - self.start).total_seconds()
        return self.start + timedelta(seconds=span * math.sqrt(self.rng.random()))

    def build(self) -> _Team:
        rng, team = self.rng, self.team
        size = max(3, min(150, self.budget // 2000 + 3))
        members = [self.ids.at(self.start) for _ in range(size)]
        for k, user in enumerate(members):
            email = f"gen-{team.id.hex}-{k}@generated.teamboard.dev"
            team.add("app_user", (user, email, f"User {k}", NO_PASSWORD, self.start, self.start))
        tz = TIME_ZONES[self.index % len(TIME_ZONES)]
        team.add("team", (team.id, f"Team {self.index}", members[0], tz, self.start, self.start))
        roles = ["owner"] + [
            rng.choices(("admin", "member", "guest"), (1, 8, 1))[0] for _ in members[1:]
        ]
        for user, role in zip(members, roles, strict=True):
            team.add("team_member", (team.id, user, role, self.start, self.start))
        workers = [u for u, r in zip(members, roles, strict=True) if r != "guest"]
        guests = [u for u, r in zip(members, roles, strict=True) if r == "guest"]
        projects = self._projects(workers, guests)
        tasks_budget = int(self.budget * (1 - CUSTOM_SHARE) / EVENTS_PER_TASK)
        for _ in range(max(1, tasks_budget)):
            project_id, statuses, labels, numbers = rng.choice(projects)
            self._task(project_id, statuses, labels, numbers, workers)
        self._custom(projects, self.budget - len(team.rows.get("event", [])))
        for project_id, _, _, numbers in projects:
            team.next_numbers[project_id] = numbers[0] + 1
        return team

    def _projects(
        self, workers: list[UUID], guests: list[UUID]
    ) -> list[tuple[UUID, list[UUID], list[UUID], list[int]]]:
        rng, team = self.rng, self.team
        projects = []
        for p in range(max(2, min(12, len(workers) // 8 + 2))):
            project_id = self.ids.at(self.start)
            private = p > 0 and rng.random() < 0.2
            team.add(
                "project",
                (
                    team.id,
                    project_id,
                    f"P{p + 1}",
                    f"Project {p + 1}",
                    "private" if private else "team",
                    1,
                    workers[0],
                    self.start,
                    self.start,
                ),
            )
            if private:
                for user in {workers[0], *rng.sample(workers, k=max(1, len(workers) // 3))}:
                    team.add("project_member", (team.id, project_id, user))
            elif guests and rng.random() < 0.5:
                team.add("project_member", (team.id, project_id, rng.choice(guests)))
            statuses = []
            for position, (name, category) in enumerate(WORKFLOW):
                status_id = self.ids.at(self.start)
                statuses.append(status_id)
                team.add("status", (team.id, status_id, project_id, name, category, position))
            labels = [self.ids.at(self.start) for _ in range(4)]
            projects.append((project_id, statuses, labels, [0]))
        return projects

    def _event(
        self,
        at: datetime,
        actor: UUID | None,
        kind: str,
        subject: UUID | None,
        project: UUID | None,
        payload: dict[str, Any],
    ) -> None:
        self.team.add(
            "event", (self.team.id, self.ids.at(at), at, actor, kind, subject, project, payload)
        )

    def _task(
        self,
        project_id: UUID,
        statuses: list[UUID],
        labels: list[UUID],
        numbers: list[int],
        workers: list[UUID],
    ) -> None:
        rng, team = self.rng, self.team
        backlog, todo, started, done, canceled = statuses
        created = self.when()
        task_id = self.ids.at(created)
        author = rng.choice(workers)
        assignees = rng.sample(workers, k=min(len(workers), rng.choice((0, 1, 1, 1, 2))))
        task_labels = rng.sample(labels, k=rng.choice((0, 1, 1, 2)))
        status = rng.choice((backlog, todo, todo))
        numbers[0] += 1
        self._event(
            created,
            author,
            "task.created",
            task_id,
            project_id,
            {
                "title": "task",
                "status_id": str(status),
                "assignee_ids": [str(a) for a in assignees],
                "label_ids": [str(label) for label in task_labels],
                "number": numbers[0],
            },
        )
        if assignees:
            assigned: dict[str, Any] = {"user_ids": [str(a) for a in assignees]}
            self._event(created, author, "task.assigned", task_id, project_id, assigned)
        at, completed_at = created, None
        path = [started, done] if rng.random() < 0.85 else [canceled]
        if rng.random() < 0.05:
            path += [started, done]  # reopened, then done again
        for target in path:
            at += timedelta(hours=rng.expovariate(1 / 60))
            if at >= self.now:
                break
            actor = rng.choice(assignees or workers)
            payload: dict[str, Any]
            if rng.random() < 0.5:
                payload = {"from_status_id": str(status), "to_status_id": str(target)}
                self._event(at, actor, "task.moved", task_id, project_id, payload)
            else:
                change = {"status_id": {"from": str(status), "to": str(target)}}
                payload = {"fields": ["status_id"], "changes": change}
                self._event(at, actor, "task.updated", task_id, project_id, payload)
            status = target
            completed_at = at if target == done else None
            if target == started and rng.random() < 0.6:
                self._time_entry(project_id, task_id, actor, at)
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            said = created + timedelta(hours=rng.expovariate(1 / 48))
            if said < self.now:
                self._comment(project_id, task_id, rng.choice(workers), said)
        title = f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} {numbers[0]}"
        team.add(
            "task",
            (
                team.id,
                task_id,
                project_id,
                numbers[0],
                title,
                status,
                rng.randint(0, 4),
                author,
                created,
                max(created, min(at, self.now)),
                completed_at,
            ),
        )

    def _time_entry(self, project_id: UUID, task_id: UUID, user: UUID, start: datetime) -> None:
        end = start + timedelta(minutes=self.rng.randint(10, 240))
        if end >= self.now:
            return
        entry_id = self.ids.at(end)
        row = (self.team.id, entry_id, project_id, task_id, user, start, end, end)
        self.team.add("time_entry", row)
        payload = {
            "time_entry_id": str(entry_id),
            "task_id": str(task_id),
            "started_at": _ts(start),
            "ended_at": _ts(end),
        }
        self._event(end, user, "time_entry.created", task_id, project_id, payload)

    def _comment(self, project_id: UUID, task_id: UUID, author: UUID, at: datetime) -> None:
        comment_id = self.ids.at(at)
        body = " ".join(self.rng.choices(WORDS, k=8))
        self.team.add("comment", (self.team.id, comment_id, task_id, project_id, author, body, at))
        payload = {"comment_id": str(comment_id), "mentions": []}
        self._event(at, author, "comment.created", task_id, project_id, payload)

    def _custom(
        self, projects: list[tuple[UUID, list[UUID], list[UUID], list[int]]], count: int
    ) -> None:
        rng = self.rng
        visitors = max(10, self.budget // 25)
        poster = self.team.rows["team_member"][0][1]  # the owner's API key posts them
        for _ in range(max(0, count)):
            # Zipf-like: a few visitors are very active.
            visitor = int(visitors ** rng.random()) - 1
            project = rng.choice(projects)[0] if rng.random() < 0.3 else None
            kind = rng.choices(CUSTOM_KINDS, CUSTOM_WEIGHTS)[0]
            payload = {"actor": f"visitor-{visitor}", "properties": {"path": f"/p/{visitor % 50}"}}
            self._event(self.when(), poster, kind, None, project, payload)


def _copy(cur: psycopg.Cursor[Any], table: str, rows: Iterable[tuple[Any, ...]]) -> None:
    columns = ", ".join(COLUMNS[table])
    with cur.copy(f"copy {table} ({columns}) from stdin") as copy:
        buffer: list[str] = []
        for row in rows:
            buffer.append("\t".join(_copy_value(value) for value in row))
            if len(buffer) >= 5000:
                copy.write("\n".join(buffer) + "\n")
                buffer.clear()
        if buffer:
            copy.write("\n".join(buffer) + "\n")


def _load(conn: psycopg.Connection[Any], team: _Team) -> None:
    with conn.transaction(), conn.cursor() as cur:
        for table in TABLES:
            rows = team.rows.get(table, [])
            if table == "event":
                rows.sort(key=lambda row: (row[2], row[1]))
            elif table == "task":
                rows.sort(key=lambda row: row[1])
            _copy(cur, table, rows)
        cur.executemany(
            "update project set next_task_number = %s where team_id = %s and id = %s",
            [(number, team.id, project_id) for project_id, number in team.next_numbers.items()],
        )


def generate(owner_url: str, config: GeneratorConfig, progress: Progress | None = None) -> Summary:
    """Build and load the data set; ``progress(done, total)`` counts events."""
    summary = Summary()
    shares = team_shares(config.teams)
    budgets = [max(50, round(config.events * share)) for share in shares]
    with psycopg.connect(owner_url) as conn:
        conn.execute("set session_replication_role = default")
        for index, budget in enumerate(budgets):
            rng = random.Random(config.seed * 1_000_003 + index)  # noqa: S311 - test data
            team = _TeamBuilder(index, budget, config, rng).build()
            _load(conn, team)
            summary.teams += 1
            for table, attribute in COUNTED.items():
                count = len(team.rows.get(table, []))
                setattr(summary, attribute, getattr(summary, attribute) + count)
            if progress is not None:
                progress(summary.events, sum(budgets))
    return summary


def analyze(owner_url: str) -> None:
    """VACUUM ANALYZE after a load: statistics for the planner, visibility maps for
    index-only scans, and summaries for the BRIN index."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("vacuum (analyze) event, task, comment, time_entry, project, status")
