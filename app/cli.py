"""The ``kerbside`` command: serve, worker, migrate, seed, openapi, db, users and keys."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app.auth.cli import add_api_key_commands, add_user_commands
from app.cities.cli import add_city_commands
from app.core.cli import CommandError, open_database
from app.embedded import EmbeddedCluster, port_is_free
from app.imports.cli import add_import_command
from app.privacy.cli import add_privacy_commands
from app.settings import PROJECT_ROOT, Settings, get_settings
from app.social.cli import add_social_commands


def _migrate(url: str) -> None:
    from app.migrations import upgrade_to_head

    upgrade_to_head(url)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What ``kerbside serve`` tells uvicorn beyond where to listen (tests start theirs so).

    Forwarded headers are believed only from ``KERBSIDE_TRUSTED_PROXIES``: uvicorn's own
    default believes any local peer, so behind nothing (or a proxy on another address) a
    client could name any address and walk around every per-client limit. Slow clients are
    let go: idle keep-alive connections after ``KERBSIDE_HTTP_KEEP_ALIVE_SECONDS``, requests
    whose headers take longer than ``KERBSIDE_HTTP_HEADER_TIMEOUT_SECONDS``
    (``app.core.server``).
    """
    from app.core.server import HeaderDeadlineProtocol

    trusted = [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]
    HeaderDeadlineProtocol.header_timeout_seconds = settings.http_header_timeout_seconds
    return {
        "http": HeaderDeadlineProtocol,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        "access_log": False,
        "server_header": False,
    }


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    settings = get_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    if port != settings.port and "KERBSIDE_PUBLIC_BASE_URL" not in os.environ:
        # Links in messages, and the demo's platforms that the worker polls, name the
        # address this server really answers on; the API and the worker inherit it.
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        os.environ["KERBSIDE_PUBLIC_BASE_URL"] = f"http://{shown}:{port}"
        get_settings.cache_clear()
        settings = get_settings()
    if not port_is_free(port, host if host not in ("0.0.0.0", "::") else "127.0.0.1"):
        raise CommandError(f"port {port} on {host} is in use; stop that program or pass --port")
    resolved = open_database(settings)
    worker: subprocess.Popen[bytes] | None = None
    try:
        _migrate(resolved.url)
        if (resolved.cluster is not None and not args.no_seed) or args.seed:
            from app.seed.demo import seed_demo
            from app.social.demo import demo_secrets

            # The demo's platforms (app/social/demo.py) take any token; the worker inherits them.
            demo_secrets()

            summary = asyncio.run(
                seed_demo(
                    resolved.url, reports=args.reports, public_base_url=settings.public_base_url
                )
            )
            if follows := summary.get("citizen_follows"):
                print(
                    "kerbside: the demo citizen follows " + ", ".join(follows) + "; change one's"
                    " status as staff and see GET /v1/demo/outbox",
                    file=sys.stderr,
                )
        # On the embedded database the demo is one command: photos, sweeps and the map grid
        # need a worker. A deployment runs its workers on their own (`kerbside worker`).
        if args.worker if args.worker is not None else resolved.cluster is not None:
            worker = _start_worker(args.worker_concurrency)
            print("kerbside: started a worker beside the API (--no-worker: none)", file=sys.stderr)
        print(f"kerbside: serving on http://{host}:{port} (docs at /docs)", file=sys.stderr)
        uvicorn.run(
            "app.main:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=args.workers or settings.workers,
            log_level=settings.log_level.lower(),
            **uvicorn_options(settings),
        )
    finally:
        if worker is not None:
            _stop_worker(worker)
        resolved.close()


def cmd_worker(args: argparse.Namespace) -> None:
    import uvloop

    from app.core.logging import configure_logging
    from app.jobs.worker import run_worker

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    resolved = open_database(settings)
    try:
        # uvloop, as uvicorn runs the API: the worker's time goes to sockets (requests to the
        # providers, the database); a webhook costs a tenth less CPU than on asyncio's loop.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_worker(get_settings(), once=args.once, concurrency=args.concurrency))
    finally:
        resolved.close()


def _start_worker(concurrency: int | None) -> subprocess.Popen[bytes]:
    """``kerbside worker`` as a child process, beside the API (``kerbside serve``).

    It shares the terminal's process group, so Ctrl-C reaches both; it reads the database
    URL from the environment (``open_database`` set it).
    """
    command = [sys.executable, "-m", "app.cli", "worker"]
    if concurrency:
        command += ["--concurrency", str(concurrency)]
    return subprocess.Popen(command)


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)  # a no-op when Ctrl-C already stopped it
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def cmd_migrate(args: argparse.Namespace) -> None:
    resolved = open_database(get_settings())
    try:
        _migrate(resolved.url)
        print("kerbside: database schema is at head", file=sys.stderr)
    finally:
        resolved.close()


def cmd_seed(args: argparse.Namespace) -> None:
    from app.seed.demo import seed_demo

    resolved = open_database(get_settings())
    try:
        _migrate(resolved.url)
        summary = asyncio.run(seed_demo(resolved.url, reports=args.reports))
        print(json.dumps(summary, indent=2))
    finally:
        resolved.close()


def cmd_openapi(args: argparse.Namespace) -> None:
    from app.openapi_doc import openapi_json

    target = Path(args.output)
    generated = openapi_json()
    if args.check:
        current = target.read_text() if target.exists() else ""
        if current != generated:
            raise CommandError(
                f"{target} is out of date with the code: run `kerbside openapi` and commit it"
            )
        print(f"kerbside: {target} matches the code", file=sys.stderr)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(generated)
    print(f"kerbside: wrote {target}", file=sys.stderr)


def cmd_db(args: argparse.Namespace) -> None:
    settings = get_settings()
    if settings.database_url and args.action != "url":
        raise CommandError("KERBSIDE_DATABASE_URL is set: the embedded cluster is not in use")
    if args.action == "url":
        resolved = open_database(settings)
        print(resolved.url)
        return
    cluster = EmbeddedCluster(root=settings.embedded_dir, port=settings.embedded_port)
    if args.action == "start":
        print(cluster.ensure_running())
    elif args.action == "stop":
        cluster.stop()
        print("kerbside: embedded database stopped", file=sys.stderr)
    elif args.action == "status":
        state = "running" if cluster.is_running() else "stopped"
        print(f"{state} {cluster.datadir}")  # where it lives (as root it may move, README)


def _handle_sigterm(*_: Any) -> None:
    raise KeyboardInterrupt


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "serve": cmd_serve,
    "worker": cmd_worker,
    "migrate": cmd_migrate,
    "seed": cmd_seed,
    "openapi": cmd_openapi,
    "db": cmd_db,
}

# Other domains add their sub-commands here: name -> (configure parser, run).
EXTRA_COMMANDS: list[Callable[[Any], None]] = [
    add_user_commands,
    add_api_key_commands,
    add_import_command,
    add_city_commands,
    add_social_commands,
    add_privacy_commands,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kerbside",
        # Plain text: argparse prints it as it is (the module docstring is reStructuredText).
        description="Kerbside, civic issue reporting: run the API and its jobs, manage the "
        "database, demo data, accounts, API keys and imports. "
        "`kerbside COMMAND --help` tells more.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API (embedded database unless configured)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--no-seed", action="store_true", help="skip demo data (embedded db)")
    serve.add_argument("--seed", action="store_true", help="load demo data into a configured db")
    serve.add_argument("--reports", type=int, default=400, help="demo reports to file once")
    serve.add_argument(
        "--worker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run a job worker beside the API (default: only on the embedded database)",
    )
    serve.add_argument("--worker-concurrency", type=int, help="jobs that worker runs at once")

    worker = sub.add_parser("worker", help="run background jobs (the procrastinate queue)")
    worker.add_argument(
        "--once", action="store_true", help="defer every periodic job, run all that is due, exit"
    )
    worker.add_argument(
        "--concurrency", type=int, help="jobs run at once (KERBSIDE_WORKER_CONCURRENCY)"
    )

    sub.add_parser("migrate", help="bring the database schema to the latest revision")

    seed = sub.add_parser("seed", help="load (or complete) the demo jurisdiction")
    seed.add_argument("--reports", type=int, default=400, help="demo reports to file once")

    openapi = sub.add_parser("openapi", help="write (or --check) openapi/openapi.json")
    openapi.add_argument("--output", default=str(PROJECT_ROOT / "openapi" / "openapi.json"))
    openapi.add_argument("--check", action="store_true")

    db = sub.add_parser("db", help="the embedded PostgreSQL cluster")
    db.add_argument("action", choices=["url", "start", "stop", "status"])

    for configure in EXTRA_COMMANDS:
        configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _handle_sigterm)
    run = COMMANDS.get(args.command) or args.run
    try:
        run(args)
    except CommandError as exc:
        print(f"kerbside: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
