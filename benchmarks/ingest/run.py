"""Ingest throughput on N small JPEGs: `beltcurate ingest` vs the bare floor (read + sha256 +
full decode, serial, no database), side by side in one run.

    python benchmarks/ingest/run.py --files 20000 --repeats 3
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.common import median, save  # noqa: E402
from curation.catalog import Catalog  # noqa: E402
from curation.ingest import IngestOptions, ingest  # noqa: E402


def make_files(root: Path, n: int, size=(160, 120)) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    for i in range(n):
        folder = root / f"seq{i // 500:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        frame = np.roll(base, i, axis=1)  # distinct bytes, realistic JPEG cost
        for bit in range(17):  # the index as 8x8 black/white blocks: survives JPEG, unique bytes per file
            frame[:8, bit * 8 : bit * 8 + 8] = 255 if (i >> bit) & 1 else 0
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, "JPEG", quality=85)
        (folder / f"f{i:06d}_20261102T060000.jpg").write_bytes(buffer.getvalue())


def floor(root: Path) -> float:
    started = time.perf_counter()
    for path in sorted(root.rglob("*.jpg")):
        data = path.read_bytes()
        hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    return time.perf_counter() - started


def run_ingest(root: Path, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(f"sqlite:///{tmp}/catalog.sqlite")
        options = IngestOptions(site="s", line="l", camera="c", workers=workers,
                                filename_pattern=r"(?P<ts>\d{8}T\d{6})")
        summary = ingest(catalog, root, options)
        catalog.dispose()
        assert summary.new == summary.scanned, summary
        return summary.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="beltcurate-ingest-bench-"))
    try:
        make_files(root, args.files)
        rows = {"floor (serial read+hash+decode)": [], "ingest workers=1": [], "ingest workers=2": []}
        for _ in range(args.repeats):  # interleaved so machine noise hits all variants alike
            rows["floor (serial read+hash+decode)"].append(floor(root))
            rows["ingest workers=1"].append(run_ingest(root, 1))
            rows["ingest workers=2"].append(run_ingest(root, 2))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    floor_s = median(rows["floor (serial read+hash+decode)"])
    result = {name: {"median_s": round(median(v), 3), "files_per_s": round(args.files / median(v), 1),
                     "vs_floor": round(floor_s / median(v), 3), "runs_s": [round(x, 3) for x in v]}
              for name, v in rows.items()}
    lines = [f"# Ingest benchmark: {args.files} JPEGs 160x120, median of {args.repeats}", "",
             "| variant | median s | files/s | speed vs floor |", "| --- | --- | --- | --- |"]
    lines += [f"| {k} | {v['median_s']} | {v['files_per_s']} | {v['vs_floor']} |" for k, v in result.items()]
    lines += ["", "Goal: >= 300 files/s on 2 cores. The floor has no database and no EXIF/metadata work."]
    save("ingest", {"files": args.files, "repeats": args.repeats, "results": result}, "\n".join(lines))


if __name__ == "__main__":
    main()
