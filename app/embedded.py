"""A project-local PostgreSQL + PostGIS cluster for development, demos and tests.

When ``KERBSIDE_DATABASE_URL`` is unset, ``kerbside serve`` starts a cluster under
``.kerbside/pg`` on its own port and socket (never the system's 5432), creates the
``kerbside`` database with PostGIS, and stops the cluster on exit. PostgreSQL refuses to
run as root, so as root the cluster runs as the unprivileged system user ``kerbside``.

Everything here shells out to the server's own tools (``initdb``, ``pg_ctl``, ``psql``)
so the cluster behaves exactly like a production one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_USER = "kerbside"
DATABASE = "kerbside"
SUPERUSER = "kerbside"


class EmbeddedDatabaseError(RuntimeError):
    """A one-line, human explanation of why the embedded cluster cannot run."""


def find_bindir() -> Path:
    """The newest installed PostgreSQL server with PostGIS available.

    Debian installs servers under ``/usr/lib/postgresql/<major>/bin``; ``KERBSIDE_PG_BINDIR``
    overrides the search (for other layouts).
    """
    override = os.environ.get("KERBSIDE_PG_BINDIR")
    if override:
        bindir = Path(override)
        if not (bindir / "initdb").exists():
            raise EmbeddedDatabaseError(f"KERBSIDE_PG_BINDIR={override} has no initdb")
        return bindir
    candidates: list[tuple[int, Path]] = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        major = bindir.parent.name
        if major.isdigit() and (bindir / "initdb").exists():
            candidates.append((int(major), bindir))
    if not candidates:
        found = shutil.which("initdb")
        if found:
            return Path(found).parent
        raise EmbeddedDatabaseError(
            "PostgreSQL server binaries not found: install them (make run does: "
            "apt-get install postgresql postgresql-<version>-postgis-3) "
            "or set KERBSIDE_DATABASE_URL"
        )
    with_postgis = [
        (major, bindir)
        for major, bindir in candidates
        if Path(f"/usr/share/postgresql/{major}/extension/postgis.control").exists()
    ]
    if not with_postgis:
        majors = ", ".join(str(m) for m, _ in sorted(candidates))
        raise EmbeddedDatabaseError(
            f"PostGIS is not installed for PostgreSQL {majors}: "
            f"apt-get install postgresql-{max(candidates)[0]}-postgis-3"
        )
    return max(with_postgis)[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            SERVICE_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 9):  # 9: the user appeared meanwhile
        raise EmbeddedDatabaseError(
            f"could not create user {SERVICE_USER}: {result.stderr.strip()}"
        )
    return pwd.getpwnam(SERVICE_USER)


@dataclass
class EmbeddedCluster:
    """One PostgreSQL cluster in a directory of ours, reachable on 127.0.0.1:``port``."""

    root: Path
    port: int
    throwaway: bool = False  # tests: fsync off, nothing kept
    bindir: Path = field(default_factory=find_bindir)
    started_here: bool = False

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self._as_root = os.geteuid() == 0
        self._user: pwd.struct_passwd | None = _ensure_service_user() if self._as_root else None
        if self._user is not None and not self._reachable_by_service_user(self.root):
            # The project sits somewhere the unprivileged user cannot enter (e.g. /root):
            # keep the cluster in a stable per-project directory it can reach.
            digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
            self.root = Path("/var/lib/kerbside") / digest
        self.datadir = self.root / "pg"
        # Unix socket paths are limited to ~107 bytes; keep ours short and private.
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        self.socket_dir = Path(tempfile.gettempdir()) / f"kerbside-{digest}"
        self.logfile = self.root / "postgresql.log"

    # -- public -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def ensure_running(self) -> str:
        """Initialise (once), start (unless already running) and prepare the database.

        Returns the libpq URL of the ``kerbside`` database, PostGIS enabled.
        """
        self._prepare_dirs()
        if not (self.datadir / "PG_VERSION").exists():
            self._initdb()
        if self.is_running():
            running_port = self._running_port()
            if running_port is not None and running_port != self.port:
                self.port = running_port
        else:
            if not port_is_free(self.port):
                raise EmbeddedDatabaseError(
                    f"port {self.port} is in use by another program; set KERBSIDE_EMBEDDED_PORT "
                    "to a free port or KERBSIDE_DATABASE_URL to an existing PostGIS server"
                )
            self._start()
            self.started_here = True
        self._create_database()
        return self.url

    def start(self) -> None:
        """Start the cluster as it is (a standby too: nothing is created in it)."""
        if not self.is_running():
            self._start()
            self.started_here = True

    def standby(self) -> EmbeddedCluster:
        """A streaming replica of this running cluster, started as a hot standby.

        A base backup (``pg_basebackup -R``: it also writes ``primary_conninfo`` and
        ``standby.signal``) into a fresh temporary directory, on a free port. The primary's
        ``pg_hba.conf`` (initdb's) lets local replication connections in.
        """
        root = Path(tempfile.mkdtemp(prefix="kerbside-pg-standby-"))
        root.chmod(0o755)
        replica = EmbeddedCluster(
            root=root, port=free_port(), throwaway=self.throwaway, bindir=self.bindir
        )
        replica._prepare_dirs()
        replica.datadir.mkdir(mode=0o700)
        if replica._user is not None:
            os.chown(replica.datadir, replica._user.pw_uid, replica._user.pw_gid)
        self._run(
            [
                str(self.bindir / "pg_basebackup"),
                "-D",
                str(replica.datadir),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ]
        )
        replica.start()
        return replica

    def is_running(self) -> bool:
        if not (self.datadir / "PG_VERSION").exists():
            return False
        result = self._run(
            [str(self.bindir / "pg_ctl"), "status", "-D", str(self.datadir)], check=False
        )
        return result.returncode == 0

    def stop(self) -> None:
        if self.is_running():
            self._run(
                [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", "fast", "-w"],
                check=False,
            )
        self.started_here = False

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    # -- internals --------------------------------------------------------------------------

    def _reachable_by_service_user(self, path: Path) -> bool:
        probe = path
        while not probe.exists():
            probe = probe.parent
        result = subprocess.run(
            ["runuser", "-u", SERVICE_USER, "--", "test", "-x", str(probe)],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def _prepare_dirs(self) -> None:
        for path in (self.root, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            if self._user is not None:
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
            path.chmod(0o700 if path == self.socket_dir else 0o755)

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        tool = Path(argv[0]).name
        if self._user is not None:
            argv = ["runuser", "-u", SERVICE_USER, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
        if check and result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            tail = message[-1] if message else f"exit code {result.returncode}"
            raise EmbeddedDatabaseError(f"{tool}: {tail}")
        return result

    def _initdb(self) -> None:
        if self.datadir.exists() and any(self.datadir.iterdir()):
            raise EmbeddedDatabaseError(f"{self.datadir} exists but holds no cluster; remove it")
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(self.datadir, self._user.pw_uid, self._user.pw_gid)
        self.datadir.chmod(0o700)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ]
        )
        settings = [
            "# Written by Kerbside's embedded cluster manager.",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.socket_dir}'",
            "max_connections = 200",
            f"shared_buffers = '{shared_buffers_mb(throwaway=self.throwaway)}MB'",
            "work_mem = '16MB'",
            "maintenance_work_mem = '256MB'",
            "timezone = 'UTC'",
            "log_timezone = 'UTC'",
            "logging_collector = off",
        ]
        if self.throwaway:
            settings += [
                "fsync = off",
                "synchronous_commit = off",
                "full_page_writes = off",
            ]
        with (self.datadir / "postgresql.auto.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")

    def _running_port(self) -> int | None:
        pidfile = self.datadir / "postmaster.pid"
        with contextlib.suppress(OSError, IndexError, ValueError):
            return int(pidfile.read_text().splitlines()[3])
        return None

    def _start(self) -> None:
        result = self._run(
            [
                str(self.bindir / "pg_ctl"),
                "start",
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port} -k {self.socket_dir}",
            ],
            check=False,
        )
        if result.returncode != 0:
            tail = ""
            with contextlib.suppress(OSError):
                lines = self.logfile.read_text().strip().splitlines()
                tail = lines[-1] if lines else ""
            raise EmbeddedDatabaseError(
                f"embedded PostgreSQL did not start ({tail or result.stderr.strip()}); "
                f"see {self.logfile}"
            )

    def _psql(self, sql: str, database: str = "postgres") -> str:
        result = self._run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ]
        )
        return result.stdout.strip()

    def _create_database(self) -> None:
        # DATABASE is a constant of ours, not input.
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")  # noqa: S608
        if exists != "1":
            self._psql(f"CREATE DATABASE {DATABASE}")
        self._psql("CREATE EXTENSION IF NOT EXISTS postgis", database=DATABASE)


def shared_buffers_mb(*, throwaway: bool = False) -> int:
    """PostgreSQL's cache: a quarter of the machine's memory (the PostgreSQL manual's starting
    point), at least 256 MB and at most 4 GB; 128 MB for the tests' small throwaway clusters.
    Kept cluster data needs it: at 1M tickets the map's read model and its index are about
    1 GB, and a page missing from the cache costs a copy from the kernel's."""
    if throwaway:
        return 128
    try:
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return 256
    return max(256, min(4096, total_mb // 4))


def throwaway_cluster() -> EmbeddedCluster:
    """A fresh cluster in a temporary directory on a free port (tests, benchmarks)."""
    root = Path(tempfile.mkdtemp(prefix="kerbside-pg-"))
    root.chmod(0o755)  # as root, the cluster's own user must be able to enter it
    return EmbeddedCluster(root=root, port=free_port(), throwaway=True)
