"""Request dependencies: services, the authenticated caller, and the request transaction.

A route takes exactly one transaction dependency (``PublicTx``, ``UserTx`` or ``TeamCtx``);
it opens the one transaction of the request with the right context. The unit-of-work
middleware commits it before the response is sent, or rolls it back (see
``teamboard.unit_of_work``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Annotated, Literal
from uuid import UUID

import redis.asyncio as aioredis
from fastapi import Depends, Request

from teamboard import idempotency
from teamboard.auth.api_keys import ApiKeyCredential, parse_api_key, resolve_api_key
from teamboard.auth.passwords import PasswordHasher
from teamboard.auth.throttle import LoginThrottle
from teamboard.auth.tokens import TokenService
from teamboard.config import Settings
from teamboard.db import Database, RequestMetrics, Tx
from teamboard.errors import BadRequest, Forbidden, NotFound, RateLimited, Unauthorized
from teamboard.kit.pagination import CursorCodec
from teamboard.kit.ratelimit import Budget, RateLimiter, ResponseUsages, Usage, route_cost
from teamboard.kit.throttled import Refusal, ThrottledCallers, team_of_path
from teamboard.unit_of_work import unit_of_work

Role = Literal["owner", "admin", "member", "guest"]
ROLE_RANK: dict[str, int] = {"guest": 0, "member": 1, "admin": 2, "owner": 3}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Services:
    """Everything built once per process by the lifespan (no import-time globals)."""

    settings: Settings
    db: Database
    tokens: TokenService
    hasher: PasswordHasher
    throttle: LoginThrottle
    cursors: CursorCodec
    rate_limiter: RateLimiter
    head_revision: str
    redis: aioredis.Redis | None = None
    throttled: ThrottledCallers = field(default_factory=ThrottledCallers)


async def services_dependency(request: Request) -> Services:
    """``async`` on purpose: FastAPI runs plain ``def`` dependencies in a thread pool."""
    return get_services(request)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _metrics(request: Request) -> RequestMetrics:
    metrics = getattr(request.state, "metrics", None)
    return metrics if isinstance(metrics, RequestMetrics) else RequestMetrics()


@dataclass(frozen=True)
class Caller:
    """Who is calling: a user (JWT), or a team API key not yet resolved against the DB."""

    user_id: UUID | None
    session_id: UUID | None = None
    api_key: ApiKeyCredential | None = None


async def authenticate(request: Request) -> Caller:
    """Identify the caller (``async`` so FastAPI does not hop to a thread for it)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    # A plain comparison: the scheme is no secret, and hmac.compare_digest raises TypeError
    # (a 500) on the non-ASCII text a latin-1 header value may carry.
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    token = token.strip()
    if token.startswith("tb_"):
        return Caller(user_id=None, api_key=parse_api_key(token))
    claims = get_services(request).tokens.verify_access(token)
    return Caller(user_id=claims.user_id, session_id=claims.session_id)


@dataclass
class UserContext:
    """A transaction with the caller's user context and no team."""

    tx: Tx
    user_id: UUID
    session_id: UUID | None


#: The caller's role in a team (no row: not a member). RLS shows a user only their teams.
MEMBERSHIP_QUERY = "select role from team_member where team_id = %s and user_id = %s"


@dataclass
class TeamContext:
    """A transaction scoped to the team in the path, with the caller's membership.

    ``scopes`` is None for users and the key's scopes for API keys; a key can never do more
    than the member who created it.
    """

    tx: Tx
    team_id: UUID
    user_id: UUID
    scopes: frozenset[str] | None
    _role: str | None = field(default=None, init=False)
    _role_loaded: bool = field(default=False, init=False)

    async def role(self) -> str | None:
        if not self._role_loaded:
            self._role = await self.tx.fetch_value(MEMBERSHIP_QUERY, (self.team_id, self.user_id))
            self._role_loaded = True
        return self._role

    def know_role(self, role: str | None) -> None:
        """Record a membership the route already read (saves the membership query)."""
        self._role, self._role_loaded = role, True

    def cursor_for_members(self) -> MembersCursorBlock:
        """Decode a list's cursor within this block when the membership check comes later
        (lists that prove access by the rows they find): a cursor refused as
        ``invalid_cursor`` answers a non-member 404 like any request on a team they cannot
        see. Otherwise a cursor signed for team B answers 404 on B's list but 400 on any
        other team's, which tells an outsider which team it came from (found by
        tests/reliability/test_isolation_fuzz.py). Members still get the 400."""
        return MembersCursorBlock(self)

    async def require(self, minimum: Role) -> str:
        """The caller's role, or 404 for non-members (the team's existence stays hidden)
        and 403 for members whose role or API-key scope is too low."""
        role = await self.role()
        if role is None:
            raise NotFound()
        if ROLE_RANK[role] < ROLE_RANK[minimum]:
            raise Forbidden(f"This action needs the {minimum} role", code="insufficient_role")
        admin_action = ROLE_RANK[minimum] >= ROLE_RANK["admin"]
        if admin_action and self.scopes is not None and "admin" not in self.scopes:
            raise Forbidden("This API key lacks the admin scope", code="insufficient_scope")
        return role


class MembersCursorBlock:
    """The block of :meth:`TeamContext.cursor_for_members`. A class rather than an
    ``asynccontextmanager``: every page after the first enters it, and the generator form
    costs a dozen Python calls more per request (the generator, its wrapper, the event
    loop's async-generator hooks)."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: TeamContext) -> None:
        self._ctx = ctx

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # A non-member's NotFound is raised from here, chained to the BadRequest; any
        # other exception goes on as it is (None: nothing is suppressed).
        if isinstance(exc, BadRequest) and exc.code == "invalid_cursor":
            await self._ctx.require("guest")


def open_tx(
    request: Request,
    *,
    user_id: UUID | None,
    team_id: UUID | None = None,
    write: bool | None = None,
) -> Tx:
    """The request's transaction: a write unless the method is safe (or as ``write`` says,
    for GraphQL, whose operation decides). The unit-of-work middleware commits it as the
    response starts (or rolls it back)."""
    tx = get_services(request).db.unit(
        user_id=user_id,
        team_id=team_id,
        write=request.method not in SAFE_METHODS if write is None else write,
        metrics=_metrics(request),
    )
    return unit_of_work(request).add(tx)


async def _limit(
    request: Request,
    caller: str,
    team_id: UUID | None = None,
    is_member: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    """Spend the route's cost (see ``route_cost``) from the caller's and the team's budgets."""
    await spend(request, caller, team_id, route_cost(request.scope), is_member=is_member)


async def spend(
    request: Request,
    caller: str | None,
    team_id: UUID | None,
    cost: int,
    *,
    is_member: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    """Spend ``cost`` from the caller's budget (none when ``caller`` is None), and check the
    team's.

    ``caller`` is an authenticated identity (never a claimed one). GraphQL spends a query's
    computed cost: the caller's before execution, each team's as the query reaches it.

    A team's budget is a member's business only. ``is_member`` says how to learn whether the
    caller is one, for a caller not yet known to be (a user's token; an API key is proven by
    its team). The team's budget is charged, and its ``RateLimit`` fields added, only once
    the request has succeeded, so nobody exhausts or observes another team's budget by
    naming its id; when it is exhausted, membership is checked before answering 429 (one
    query, on that path only): a non-member gets the route's own 404, as for a team that
    does not exist. A 429 is remembered by ``ThrottledCallers`` so that the credential's
    next requests are refused before any of this.
    """
    services = get_services(request)
    settings, limiter = services.settings, services.rate_limiter
    charged: list[Budget] = []
    if caller is not None:
        ip = caller.startswith("ip:")
        per_caller = settings.rate_limit_per_ip if ip else settings.rate_limit_per_caller
        charged.append(Budget("caller", caller, per_caller))
    team = (
        None if team_id is None else Budget("team", f"team:{team_id}", settings.rate_limit_per_team)
    )
    usages = limiter.settle(charged, cost, [] if team is None else [team], room=cost)
    shown = usages[: len(charged)]
    exhausted = []
    for checked in shown:  # a loop, not a comprehension (a call): every request runs this
        if checked.used > checked.budget.limit:
            exhausted.append(checked)
    unit = unit_of_work(request)
    if team is not None:
        usage = usages[-1]
        if usage.used + cost > team.limit and (is_member is None or await is_member()):
            exhausted.append(usage)
            shown.append(usage)
    report = unit.rate_limits
    if report is None:
        report = unit.rate_limits = ResponseUsages(limiter)
    report.shown += shown
    if exhausted:
        _remember_refusal(request, exhausted, limiter.window)
        raise RateLimited(max(u.reset_after for u in exhausted))
    if team is not None:
        report.due.append((team, cost, usage))


def _remember_refusal(request: Request, exhausted: Sequence[Usage], window: int) -> None:
    """Record the credential of a request refused 429, for the scope its refusal covers
    (see ``teamboard.kit.throttled``): everywhere for the caller's own budget, the team's
    routes for a team budget (not ``/graphql``, whose teams are not in the path), nothing
    for a public route's per-address budget."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return
    for usage in sorted(exhausted, key=lambda u: u.budget.name != "caller"):
        if usage.budget.key.startswith("ip:"):
            continue
        scope = None if usage.budget.name == "caller" else team_of_path(request.url.path)
        if usage.budget.name == "team" and scope != usage.budget.key.removeprefix("team:"):
            continue
        until = time.monotonic() + usage.reset_after
        refusal = Refusal(until, usage.budget.name, usage.budget.limit, window)
        get_services(request).throttled.record(authorization, scope, refusal)
        return


async def public_tx(request: Request) -> Tx:
    """A transaction with no user (registration, login, token refresh), limited per client
    address."""
    await _limit(request, f"ip:{request.client.host if request.client else 'unknown'}")
    return open_tx(request, user_id=None)


async def user_tx(
    request: Request, caller: Annotated[Caller, Depends(authenticate)]
) -> UserContext:
    if caller.user_id is None:
        raise Forbidden(
            "API keys can only be used on their team's routes", code="api_key_not_allowed"
        )
    await _limit(request, f"user:{caller.user_id}")
    tx = open_tx(request, user_id=caller.user_id)
    await idempotency.claim(request, tx, caller=f"user:{caller.user_id}", team_id=None)
    return UserContext(tx, caller.user_id, caller.session_id)


async def _act_in_team(
    request: Request, tx: Tx, team_id: UUID, caller: Caller
) -> tuple[UUID, frozenset[str] | None, str]:
    """Who acts in the team: (user, API-key scopes or None, rate-limit identity). Resolves an
    API key (refusing a read-only key on a write) and spends the request's rate limit."""
    if caller.api_key is not None:
        grant = await resolve_api_key(tx, caller.api_key, team_id)
        if request.method not in SAFE_METHODS and not grant.scopes & {"write", "admin"}:
            raise Forbidden("This API key is read-only", code="insufficient_scope")
        identity = f"key:{grant.key_id}"
        await _limit(request, identity, team_id)  # the key's team is its membership
        return grant.user_id, grant.scopes, identity
    user_id = caller.user_id
    assert user_id is not None

    async def is_member() -> bool:
        return await tx.fetch_value(MEMBERSHIP_QUERY, (team_id, user_id)) is not None

    identity = f"user:{user_id}"
    await _limit(request, identity, team_id, is_member)
    return user_id, None, identity


async def team_tx(
    request: Request, team_id: UUID, caller: Annotated[Caller, Depends(authenticate)]
) -> TeamContext:
    tx = open_tx(request, user_id=caller.user_id, team_id=team_id)
    user_id, scopes, identity = await _act_in_team(request, tx, team_id, caller)
    await idempotency.claim(request, tx, caller=identity, team_id=team_id)
    return TeamContext(tx, team_id, user_id, scopes)


@dataclass(frozen=True)
class TeamGrant:
    """A caller authorized to act in a team, for routes that run their own transactions."""

    team_id: UUID
    user_id: UUID
    scopes: frozenset[str] | None
    caller: str  # who acts (``user:<id>`` or ``key:<id>``), as idempotency keys are scoped

    @asynccontextmanager
    async def transaction(self, request: Request, *, write: bool) -> AsyncIterator[TeamContext]:
        """A team transaction of its own, committed when the block exits."""
        database = get_services(request).db
        async with database.transaction(
            user_id=self.user_id, team_id=self.team_id, write=write, metrics=_metrics(request)
        ) as tx:
            yield TeamContext(tx, self.team_id, self.user_id, self.scopes)


async def team_grant(
    request: Request, team_id: UUID, caller: Annotated[Caller, Depends(authenticate)]
) -> TeamGrant:
    """Like ``TeamCtx`` without the request transaction, for a route that must not hold a
    connection for its whole duration (an upload streams its body between two short
    transactions). Rate-limited like ``TeamCtx``; the route applies ``Idempotency-Key``
    itself, in the transaction that records its work (see ``teamboard.idempotency``)."""
    async with get_services(request).db.transaction(
        user_id=caller.user_id, team_id=team_id, write=False, metrics=_metrics(request)
    ) as tx:
        user_id, scopes, identity = await _act_in_team(request, tx, team_id, caller)
    return TeamGrant(team_id, user_id, scopes, identity)


PublicTx = Annotated[Tx, Depends(public_tx)]
UserTx = Annotated[UserContext, Depends(user_tx)]
TeamCtx = Annotated[TeamContext, Depends(team_tx)]
TeamGrantDep = Annotated[TeamGrant, Depends(team_grant)]
ServicesDep = Annotated[Services, Depends(services_dependency)]
