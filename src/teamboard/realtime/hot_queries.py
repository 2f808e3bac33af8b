"""Hot queries of the realtime feed (``teamboard db explain``)."""

from __future__ import annotations

from teamboard.config import Settings
from teamboard.deps import TeamContext
from teamboard.events import log
from teamboard.kit.hot_queries import HotQuery, Sample
from teamboard.kit.pagination import CursorCodec

#: The default batch (``REALTIME_BATCH_SIZE``): a deployment's own size gives the same plan
#: shape, only the limit in the text differs.
BATCH = Settings.model_fields["realtime_batch_size"].default


async def _feed(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    """A new subscriber's first read (leaving out what its snapshot saw committed), then
    a later read, from the position a subscriber starts at."""
    position, snapshot = await log.current_position(ctx.tx)
    await log.read_team(ctx.tx, sample.team_id, position, BATCH, snapshot)
    return await log.read_team(ctx.tx, sample.team_id, position, BATCH)


QUERIES = [
    HotQuery(
        "realtime feed of a team",
        _feed,
        unbounded="offsets are transaction ids, which the monthly partitions do not bound:"
        " one index probe per partition, from the reader's position",
    )
]
