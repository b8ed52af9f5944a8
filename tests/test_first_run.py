"""What a newcomer meets before the API: installing, the command's help, the seed's log, and
where the README says the embedded cluster lives."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from app.cli import build_parser
from app.embedded import EmbeddedCluster
from app.seed.progress import Progress
from app.settings import PROJECT_ROOT


def test_help_is_plain_text() -> None:
    parser = build_parser()
    texts = [parser.format_help()]
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    texts += [sub.format_help() for sub in subparsers.choices.values()]
    for text in texts:
        assert "``" not in text, text
        assert ":func:`" not in text
        assert ":class:`" not in text


def test_progress_in_a_log_is_one_line_per_step() -> None:
    log = io.StringIO()  # not a terminal
    progress = Progress("kerbside: demo reports", 100, log)
    for done in (50, 100):
        progress.step(done)
    assert "\r" not in log.getvalue()
    assert log.getvalue().splitlines() == [
        "kerbside: demo reports 50/100",
        "kerbside: demo reports 100/100",
    ]


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    progress = Progress("seed", 2, screen)
    progress.step(1)
    progress.step(2)
    assert screen.getvalue() == "\rseed 1/2\rseed 2/2\n"


def test_readme_says_where_the_embedded_cluster_lives(tmp_path: Path) -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert ".kerbside/pg" in readme
    assert "/var/lib/kerbside/" in readme
    # And the code agrees: as root, a project the service user cannot enter moves there.
    if os.geteuid() != 0:
        pytest.skip("only root moves the cluster")
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    cluster = EmbeddedCluster(root=hidden / ".kerbside", port=54999)
    assert str(cluster.datadir).startswith("/var/lib/kerbside/")
    assert cluster.datadir.name == "pg"


@pytest.mark.slow
def test_the_package_builds_without_warnings(tmp_path: Path) -> None:
    """A wheel, as pip builds it on install: no setuptools deprecation (a build failure
    from 2027-02-18), an SPDX licence, and the vendored files inside."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-v",
            "-w",
            str(tmp_path),
            str(PROJECT_ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    for sign in ("Deprecat", "BuildBackendWarning", "!!"):
        assert sign not in output, [line for line in output.splitlines() if sign in line]
    (wheel,) = tmp_path.glob("kerbside-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        assert "License-Expression: AGPL-3.0-or-later" in archive.read(metadata).decode()
    for packaged in (
        "app/home/static/index.html",
        "app/home/static/vendor/swagger-ui-bundle.js",
        "app/home/static/vendor/redoc.standalone.js",
        "app/maps/static/vendor/maplibre-gl.js",
    ):
        assert packaged in names, packaged
