"""Schema migrations with Alembic: upgrade to head and report where a database stands."""

from __future__ import annotations

from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import DBAPIError

from store._errors import SchemaError, StoreUnavailable


@dataclass(frozen=True)
class MigrationStatus:
    backend: str
    current: str | None
    head: str
    tables: tuple[str, ...]

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", "store:migrations")
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the migration scripts have no head"
    return head


def upgrade(engine: Engine, revision: str = "head") -> MigrationStatus:
    """Bring the database to ``revision`` (head by default); safe to run again."""
    config = _config()
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    except DBAPIError as exc:
        raise StoreUnavailable(f"cannot migrate {_safe(engine)}: {_first_line(exc)}") from exc
    return status(engine)


def status(engine: Engine) -> MigrationStatus:
    """Where the database stands against the migration head."""
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            tables = tuple(sorted(inspect(conn).get_table_names()))
    except DBAPIError as exc:
        raise StoreUnavailable(f"cannot read {_safe(engine)}: {_first_line(exc)}") from exc
    return MigrationStatus(engine.dialect.name, current, head_revision(), tables)


def require_head(engine: Engine) -> None:
    """Raise SchemaError unless the database is at the migration head."""
    state = status(engine)
    if not state.up_to_date:
        raise SchemaError(
            f"database schema is at {state.current or 'nothing'}, code needs {state.head}: "
            "run `o2c db upgrade`"
        )


def _safe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0]
