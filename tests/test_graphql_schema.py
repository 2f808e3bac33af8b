"""The committed SDL (``schema.graphql``) is the schema: CI fails when it is not current."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from teamboard.cli import app as cli
from teamboard.graphql.schema import sdl

SCHEMA = Path(__file__).resolve().parent.parent / "schema.graphql"


def test_the_committed_sdl_is_current() -> None:
    """schema.graphql is the contract of /graphql: regenerate it with
    ``teamboard graphql-schema`` when the schema changes."""
    assert SCHEMA.read_text(encoding="utf-8") == sdl()
    result = CliRunner().invoke(cli, ["graphql-schema", "--check", "--output", str(SCHEMA)])
    assert result.exit_code == 0, result.output


def test_the_schema_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "schema.graphql"
    stale.write_text("type Query { old: Int }\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["graphql-schema", "--check", "--output", str(stale)])
    assert result.exit_code == 1
    written = CliRunner().invoke(cli, ["graphql-schema", "--output", str(stale)])
    assert written.exit_code == 0
    assert stale.read_text(encoding="utf-8") == sdl()
