"""``GET /teams/{team_id}/events/stream``: the team's events as Server-Sent Events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from teamboard.deps import Caller, ServicesDep, TeamCtx, authenticate
from teamboard.errors import BadRequest
from teamboard.events import log
from teamboard.events.log import Offset
from teamboard.kit.ratelimit import costs
from teamboard.realtime.hub import RealtimeHub
from teamboard.realtime.stream import EventStream, Subscriber

router = APIRouter(prefix="/teams/{team_id}/events", tags=["realtime"])

#: One message of the stream, as OpenAPI describes ``text/event-stream`` (its schema is per
#: event; comments, the heartbeats, are not events). ``data`` is JSON: an event of the log
#: (``id`` is then its offset, to resume from) or a control message named by ``event``.
SSE_MESSAGE = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {"type": "string", "contentMediaType": "application/json"},
        "event": {"type": "string", "description": "absent for events; ready, reset..."},
        "id": {"type": "string", "description": "the event's offset"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
STREAM_DOC = {
    200: {
        "description": "The stream (see teamboard.realtime.stream for the protocol)",
        "content": {"text/event-stream": {"schema": SSE_MESSAGE}},
    }
}


@router.get("/stream", response_class=Response, responses=STREAM_DOC)  # type: ignore[arg-type]
@costs(5)
async def stream_events(
    request: Request,
    ctx: TeamCtx,
    services: ServicesDep,
    caller: Annotated[Caller, Depends(authenticate)],
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[
        str | None, Query(description="Resume position when the header cannot be sent")
    ] = None,
) -> Response:
    """Events of the team the caller may see, live; ``Last-Event-ID`` (or ``after``)
    replays those after that offset first. Without it the stream starts now."""
    await ctx.require("guest")
    resume = last_event_id or after
    since = None
    if resume is not None:
        try:
            start = Offset.parse(resume)
        except ValueError as exc:
            raise BadRequest("Last-Event-ID is not an event offset", code="invalid_offset") from exc
    else:
        start, since = await log.current_position(ctx.tx)
    expires_at = None
    if caller.api_key is None:
        token = request.headers["authorization"].partition(" ")[2].strip()
        expires_at = services.tokens.verify_access_until(token)[1]
    hub: RealtimeHub = request.app.state.realtime
    return EventStream(
        hub=hub,
        db=services.db,
        settings=services.settings,
        subscriber=Subscriber(ctx.user_id, ctx.team_id, expires_at, caller.api_key),
        start=start,
        since=since,
    )
