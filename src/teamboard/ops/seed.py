"""Demo data: a few teams, users, projects and tasks, created through the services (so RLS,
triggers and the event log apply exactly as for real traffic)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from rich.progress import Progress

from teamboard.auth import repository as users
from teamboard.deps import Services, TeamContext
from teamboard.kit.ids import new_id
from teamboard.projects import service as projects
from teamboard.projects import statuses_repository as statuses
from teamboard.projects.schemas import ProjectIn
from teamboard.tasks import service as tasks
from teamboard.tasks.schemas import TaskIn
from teamboard.teams import service as teams

DEMO_PASSWORD = "teamboard-demo-password"  # noqa: S105 - documented demo credential
TEAMS = ("Acme Engineering", "Globex Design", "Initech Ops")
PROJECTS = (("ENG", "Platform"), ("WEB", "Website"), ("OPS", "Operations"))
VERBS = ("Fix", "Write", "Review", "Ship", "Design", "Refactor", "Measure", "Document")
NOUNS = ("login flow", "billing page", "search index", "release notes", "RLS audit", "dashboard")


@dataclass(frozen=True)
class SeedSummary:
    users: int
    teams: int
    projects: int
    tasks: int


async def seed_demo(services: Services, *, tasks_per_project: int = 20) -> SeedSummary:
    """Create demo users (``<name>@demo.teamboard.dev`` / DEMO_PASSWORD) and their teams."""
    rng = random.Random(42)  # noqa: S311 - demo data, not security
    password_hash = await services.hasher.hash(DEMO_PASSWORD)
    total = len(TEAMS) * len(PROJECTS) * tasks_per_project
    created_users = created_projects = created_tasks = 0
    with Progress() as progress:
        bar = progress.add_task("seeding demo data", total=total)
        for index, team_name in enumerate(TEAMS):
            owner_id = new_id()
            email = f"{team_name.split()[0].lower()}@demo.teamboard.dev"
            async with services.db.transaction(user_id=owner_id) as tx:
                if not await users.insert_user(
                    tx, owner_id, email, team_name.split()[0], password_hash
                ):
                    progress.advance(bar, len(PROJECTS) * tasks_per_project)
                    continue
                created_users += 1
                team = await teams.create_team(tx, owner_id, team_name)
                ctx = TeamContext(tx, team["id"], owner_id, None)
                for key, name in PROJECTS:
                    project = await projects.create_project(
                        ctx,
                        ProjectIn(key=key, name=name, visibility="team" if index else "private"),
                    )
                    created_projects += 1
                    workflow = await statuses.status_ids(tx, project["id"])
                    for _ in range(tasks_per_project):
                        await tasks.create_task(
                            ctx,
                            project["id"],
                            TaskIn(
                                title=f"{rng.choice(VERBS)} {rng.choice(NOUNS)}",
                                status_id=rng.choice(workflow),
                                priority=rng.randint(0, 4),
                            ),
                        )
                        created_tasks += 1
                        progress.advance(bar)
    return SeedSummary(created_users, created_users, created_projects, created_tasks)
