"""Alembic migrations, shipped inside the package so an installed teamboard can migrate."""
