"""Time entries on tasks: timers, manual entries and totals."""
