"""Find the database to use, or start the embedded one; check it can serve Kerbside.

Every failure is an ``EmbeddedDatabaseError``/``DatabaseUnavailable`` with a one-line reason,
so ``kerbside serve`` fails fast with an explanation instead of a traceback wall.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg

from app.embedded import EmbeddedCluster
from app.settings import Settings, to_libpq_url


class DatabaseUnavailable(RuntimeError):
    pass


@dataclass
class ResolvedDatabase:
    url: str
    cluster: EmbeddedCluster | None  # set when we run the embedded cluster

    def close(self) -> None:
        """Stop the embedded cluster if this process started it."""
        if self.cluster is not None and self.cluster.started_here:
            self.cluster.stop()


def resolve_database(settings: Settings) -> ResolvedDatabase:
    if settings.database_url:
        url = settings.database_url
        check_database(url)
        return ResolvedDatabase(url=url, cluster=None)
    cluster = EmbeddedCluster(root=settings.embedded_dir, port=settings.embedded_port)
    url = cluster.ensure_running()
    return ResolvedDatabase(url=url, cluster=cluster)


def describe(url: str) -> str:
    """``host:port/db`` without the password, for messages."""
    parts = urlsplit(to_libpq_url(url))
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


def check_database(url: str) -> str:
    """Connect, and make sure PostGIS is there or can be created. Returns PostGIS's version."""
    try:
        with psycopg.connect(to_libpq_url(url), connect_timeout=5, autocommit=True) as conn:
            installed = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'postgis'"
            ).fetchone()
            if installed:
                return str(installed[0])
            available = conn.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'postgis'"
            ).fetchone()
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot reach the database at {describe(url)}: {reason}"
        ) from exc
    if not available:
        raise DatabaseUnavailable(
            f"PostGIS is not installed on the server at {describe(url)}; install it there "
            "(Debian: apt-get install postgresql-<version>-postgis-3)"
        )
    return str(available[0])
