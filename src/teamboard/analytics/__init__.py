"""Analytics: dashboards over rollups kept current from the event log, custom events, and the
rollup consumer (see ``rollups.RollupConsumer``)."""
