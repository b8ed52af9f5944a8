"""``python -m bench``: run the benchmarks (``scripts/bench`` installs what they need first).

python -m bench                  # default: ≈10 min, results committed with the docs
python -m bench --quick          # ≈1 min on 10k tickets, results under bench/results/tmp/
python -m bench --only intake_json,intake_sql_ceiling   # recorded as <stamp>-partial.json
python -m bench --only social_classify_complaint,social_classify_service   # recorded too
python -m bench --render bench/results/latest.json   # re-render docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench import report
from bench.progress import say
from bench.run import (
    ALL_WORKLOADS,
    MODES,
    QUALITY_WORKLOADS,
    RESULTS_DIR,
    SCRATCH_DIR,
    Harness,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="≈1 minute on the 10k dataset")
    group.add_argument("--tiny", action="store_true", help="seconds, 200 tickets (a smoke run)")
    parser.add_argument("--workers", type=int, default=2, help="server processes (default 2)")
    parser.add_argument("--only", help="comma-separated workloads: " + ", ".join(ALL_WORKLOADS))
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached datasets")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KERBSIDE_NAME=VALUE",
        help="a Kerbside setting for this run (repeatable), e.g. KERBSIDE_DATABASE_POOL_SIZE=20;"
        " such runs write under bench/results/tmp/",
    )
    parser.add_argument(
        "--dedup-data",
        type=Path,
        metavar="CSV",
        help="the 311 export dedup_quality reads (default: $KERBSIDE_LA311_CSV or"
        " ../shared/data/la311_2020-01-01_to_03_10k.csv)",
    )
    parser.add_argument(
        "--complaints-data",
        type=Path,
        metavar="CSV",
        help="the labelled tweets social_classify_complaint reads (default:"
        " $KERBSIDE_COMPLAINTS_CSV or ../shared/data/complaints_social_media_preotiuc.csv)",
    )
    parser.add_argument(
        "--services-data",
        type=Path,
        metavar="CSV",
        help="the categorised complaints social_classify_service reads (default:"
        " $KERBSIDE_BANGALORE_CSV or ../shared/data/bangalore_complaints_categorised.csv)",
    )
    parser.add_argument("--render", type=Path, metavar="RESULTS", help="only render a results file")
    args = parser.parse_args(argv)

    if args.render:
        results = json.loads(args.render.read_text())
        _render(results, official=results.get("mode") == "default")
        return

    mode = MODES["quick" if args.quick else "tiny" if args.tiny else "default"]
    only = None
    if args.only:
        only = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = only - set(ALL_WORKLOADS)
        if unknown:
            parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    settings = dict(item.split("=", 1) for item in args.set if "=" in item)
    if len(settings) != len(args.set) or any(not k.startswith("KERBSIDE_") for k in settings):
        parser.error("--set takes KERBSIDE_NAME=VALUE")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    workdir = SCRATCH_DIR / f"{stamp}-{mode.name}"
    say(f"mode {mode.name}, {args.workers} workers; scratch files in {workdir}")
    harness = Harness(
        mode,
        workers=args.workers,
        only=only,
        workdir=workdir,
        rebuild=args.rebuild,
        kerbside_settings=settings,
        dedup_data=args.dedup_data,
        complaints_data=args.complaints_data,
        services_data=args.services_data,
    )
    results = harness.run()
    # Only a full default run with the shipped settings replaces the committed figures.
    official = mode.name == "default" and only is None and not settings
    # Quality figures (decisions, not speed) do not depend on the mode or the machine's load:
    # a run of those alone is kept beside the full runs, without replacing latest.json.
    quality = only is not None and only <= QUALITY_WORKLOADS and not settings
    # A chosen set of workloads at the default scale with the shipped settings is kept too (an
    # issue's workloads and their pairs, measured side by side in one run), never as latest.
    partial = only is not None and not quality and mode.name == "default" and not settings
    target_dir = RESULTS_DIR if official or quality or partial else SCRATCH_DIR
    target_dir.mkdir(parents=True, exist_ok=True)
    kind = "quality" if quality else "partial" if partial else mode.name
    path = target_dir / f"{stamp}-{kind}.json"
    text = json.dumps(results, indent=2) + "\n"
    path.write_text(text)
    if official:
        (RESULTS_DIR / "latest.json").write_text(text)
    say(f"results: {path}")
    _render(results, official=official, scratch=workdir)
    print(report.summary_table(results))


def _render(results: dict[str, object], *, official: bool, scratch: Path | None = None) -> None:
    if official:
        markdown, charts = DOCS / "performance.md", DOCS / "performance"
    else:
        base = scratch or SCRATCH_DIR / "render"
        markdown, charts = base / "performance.md", base / "performance"
    written = report.render(results, markdown=markdown, charts_dir=charts)
    say(f"rendered {markdown} and {len(written)} charts in {charts}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        raise SystemExit(130) from None
