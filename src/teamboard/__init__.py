"""teamboard: a multi-tenant project and task management backend on PostgreSQL."""

__version__ = "0.1.0"
