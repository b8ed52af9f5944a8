"""Photo processing without HTTP: ``app.media.processing.process_photo`` on a 12 MP JPEG.

Run as ``python -m bench.photo PHOTO --seconds 10 --threads 1 --cpus 0``: a separate process,
so its peak RSS (``VmHWM``) is the pipeline's own, and ``--cpus`` pins it (one core gives
photos/s/core). The harness writes PHOTO once with ``make_jpeg`` (``--make PHOTO``). Prints one
JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import time
from pathlib import Path

PHOTO_SIZE = (4000, 3000)  # 12 megapixels, a phone camera's 4:3


def make_jpeg(size: tuple[int, int] = PHOTO_SIZE, seed: int = 7) -> bytes:
    """A camera-like 12 MP JPEG (smooth scene + sensor noise, EXIF orientation and GPS)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    scene = np.stack(
        [
            128 + 90 * np.sin(x / 311.0) * np.cos(y / 197.0),
            128 + 80 * np.cos(x / 173.0 + y / 421.0),
            128 + 70 * np.sin((x + y) / 257.0),
        ],
        axis=-1,
    )
    scene += rng.normal(0, 9, scene.shape).astype(np.float32)
    image = Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8), "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated, as phones store portrait shots
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (51.0, 27.0, 16.2), 3: "W", 4: (2.0, 35.0, 16.4)})
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92, exif=exif)
    return out.getvalue()


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("photo", type=Path)
    parser.add_argument("--make", action="store_true", help="write a 12 MP JPEG to PHOTO, exit")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpus", default="", help="comma-separated CPUs to pin to, e.g. 0")
    args = parser.parse_args(argv)
    if args.make:
        args.photo.parent.mkdir(parents=True, exist_ok=True)
        args.photo.write_bytes(make_jpeg())
        return
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    try:
        from app.media.processing import process_photo
    except ImportError as exc:
        print(json.dumps({"unavailable": f"app.media.processing: {exc}"}))
        return
    photo = args.photo.read_bytes()
    baseline = _peak_rss_mb()
    process_photo(photo)  # warm up (imports, allocator)
    latencies: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + args.seconds

    def work() -> None:
        while time.monotonic() < deadline:
            start = time.perf_counter_ns()
            process_photo(photo)
            with lock:
                latencies.append((time.perf_counter_ns() - start) // 1000)

    started = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    print(
        json.dumps(
            {
                "photos": len(latencies),
                "seconds": round(elapsed, 2),
                "photos_per_s": round(len(latencies) / elapsed, 2),
                "latencies_us": latencies,
                "input_bytes": len(photo),
                "input_pixels": PHOTO_SIZE[0] * PHOTO_SIZE[1],
                "rss_before_mb": round(baseline, 1),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                "cpus": sorted(os.sched_getaffinity(0)),
                "threads": args.threads,
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
