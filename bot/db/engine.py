"""Engines and sessions for the state database: SQLite (default) or PostgreSQL, the same code for both.

SQLite runs in WAL mode with a busy timeout. Transactions that may write start with `BEGIN IMMEDIATE`,
so concurrent writers queue on the lock instead of failing when a read transaction turns into a write;
read-only ones (`Database.snapshot`) start with a plain `BEGIN` on their own engine and read a
consistent WAL snapshot without ever waiting for a writer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bot.core.config import DatabaseSettings, Settings
from bot.core.errors import ConfigurationError, DependencyUnavailableError

log = structlog.get_logger(__name__)

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}


class DatabaseConfigError(ConfigurationError, ValueError):
    """DATABASE_URL names a database paperbot cannot use."""

    what = "The bot's database"


class DatabaseUnavailableError(DependencyUnavailableError):
    """The state database cannot be used right now: locked by another writer beyond the busy
    timeout, down or unreachable, or out of disk. The message is one line saying what to check."""

    what = "The bot's database"

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


# Driver errors that mean "the database is not usable now", not "our SQL is wrong".
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)
# sqlite3's primary result codes (the low byte of `sqlite_errorcode`).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL = 5, 6, 10, 13


def _backend(url: URL) -> str:
    name = url.get_backend_name()
    if name not in _ASYNC_DRIVERS:
        raise DatabaseConfigError(
            f"unsupported database {name!r} in DATABASE_URL: use sqlite:///path or postgresql://host/db"
        )
    return name


def _parse(raw: str) -> URL:
    # Heroku-style `postgres://` is not a name SQLAlchemy knows.
    scheme, sep, rest = raw.strip().partition("://")
    if sep and scheme.split("+")[0] == "postgres":
        raw = f"postgresql{scheme[len('postgres') :]}://{rest}"
    return make_url(raw)


def async_url(raw: str) -> URL:
    """The URL with an asyncio driver: sqlite → aiosqlite, postgresql → psycopg (asyncpg is kept)."""
    url = _parse(raw)
    backend = _backend(url)
    if backend == "postgresql" and url.get_driver_name() == "asyncpg":
        return url
    return url.set(drivername=_ASYNC_DRIVERS[backend])


def sync_url(raw: str) -> URL:
    """The same database with a blocking driver, for APScheduler's job store."""
    url = _parse(raw)
    return url.set(drivername=_SYNC_DRIVERS[_backend(url)])


def _sqlite_path(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _install_sqlite_pragmas(engine: Engine, busy_timeout_ms: int, *, begin: str | None) -> None:
    """`begin`: the statement that opens every transaction (None leaves it to the driver)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if begin:
            # Let SQLAlchemy (not the driver) decide where transactions begin; see _on_begin.
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    if begin:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)


class Database:
    """One async engine and its session factory; `sync_engine()` builds a blocking twin for APScheduler."""

    def __init__(self, url: str, *, pool_size: int = 5, busy_timeout_ms: int = 10_000) -> None:
        self.url = async_url(url)
        self.sync_url = sync_url(url)
        self.backend = _backend(self.url)
        self._busy_timeout_ms = busy_timeout_ms
        options: dict[str, Any] = {"pool_pre_ping": True}
        if self.backend == "sqlite":
            path = _sqlite_path(self.url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        else:
            options.update(pool_size=pool_size, max_overflow=pool_size)
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = self.sessions
        self._read_engine: AsyncEngine | None = None
        if self.backend == "sqlite":
            _install_sqlite_pragmas(self.engine.sync_engine, busy_timeout_ms, begin="BEGIN IMMEDIATE")
        if self.backend == "sqlite" and _sqlite_path(self.url) is not None:  # not for in-memory ones
            # Readers on their own connections: a deferred BEGIN takes no write lock.
            self._read_engine = create_async_engine(self.url, **options)
            _install_sqlite_pragmas(self._read_engine.sync_engine, busy_timeout_ms, begin="BEGIN")
            self.read_sessions = async_sessionmaker(self._read_engine, expire_on_commit=False)
        self._sync_engines: list[Engine] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls.from_database_settings(settings.database, settings.core.data_dir)

    @classmethod
    def from_database_settings(cls, database: DatabaseSettings, data_dir: Path) -> Database:
        return cls(
            database.url_for(data_dir),
            pool_size=database.pool_size,
            busy_timeout_ms=database.busy_timeout_ms,
        )

    @property
    def redacted_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def unavailable(self, error: DBAPIError) -> DatabaseUnavailableError:
        """The one-line error to show for a driver error that means the database cannot be used now."""
        reason = " ".join(str(error.orig or error).split())[:300]
        disk_full = False
        path = _sqlite_path(self.url)
        if self.backend == "sqlite" and path is not None:
            code = (getattr(error.orig, "sqlite_errorcode", None) or 0) & 0xFF
            if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
                message = (
                    f"the state database {path} is locked by another writer "
                    f"(waited {self._busy_timeout_ms} ms); try again in a moment"
                )
            elif code == _SQLITE_FULL:
                disk_full = True
                message = f"the disk holding {path.parent} is full: the state database {path} cannot grow"
            elif code == _SQLITE_IOERR:
                message = (
                    f"the state database {path} could not be read or written ({reason}); "
                    f"check that the disk holding {path.parent} is not full"
                )
            else:
                message = f"the state database {path} is unavailable: {reason}"
        else:
            message = f"the state database at {self.redacted_url} is unavailable: {reason}"
        log.warning("db.unavailable", backend=self.backend, error=reason, disk_full=disk_full)
        return DatabaseUnavailableError(message, disk_full=disk_full)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error.

        A database that cannot be used now raises DatabaseUnavailableError; the pool reconnects by
        itself (pre-ping) once it is back."""
        try:
            async with self.sessions() as session, session.begin():
                yield session
        except UNAVAILABLE_ERRORS as exc:
            raise self.unavailable(exc) from exc

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction: on SQLite it never waits for (or blocks) a writer. Writing in it
        is a bug; SQLite would then queue for the lock like any deferred transaction."""
        try:
            async with self.read_sessions() as session, session.begin():
                yield session
        except UNAVAILABLE_ERRORS as exc:
            raise self.unavailable(exc) from exc

    def sync_engine(self) -> Engine:
        """A blocking engine on the same database (closed by `close()`)."""
        engine = create_engine(self.sync_url, pool_pre_ping=True)
        if self.backend == "sqlite":
            _install_sqlite_pragmas(engine, self._busy_timeout_ms, begin=None)
        self._sync_engines.append(engine)
        return engine

    async def close(self) -> None:
        for engine in self._sync_engines:
            engine.dispose()
        self._sync_engines.clear()
        if self._read_engine is not None:
            await self._read_engine.dispose()
        await self.engine.dispose()


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """Open the configured database and bring its schema up to date."""
    from bot.db.schema import upgrade_schema

    database = Database.from_settings(settings)
    try:
        try:
            version = await upgrade_schema(database.engine)
        except UNAVAILABLE_ERRORS as exc:
            raise database.unavailable(exc) from exc
        log.info("db.ready", url=database.redacted_url, schema_version=version)
        yield database
    finally:
        await database.close()
