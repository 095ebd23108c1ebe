"""Ingestion throughput and peak memory, beside the floor any DICOM-to-PNG converter pays.

The floor is a minimal converter doing only the pixel work on the same files: read, decode,
Modality LUT, VOI LUT/window, MONOCHROME1 inversion, resize, PNG write. The stage adds
de-identification, pseudonyms, manifests and bookkeeping on top. Each configuration runs in a
fresh process so that peak memory (max RSS, including pool workers) is its own.

    python bench/ingest.py --files 60 --min-side 1800 --max-side 2800
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path


def _floor_one(args: tuple[str, str, int]) -> None:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    from cxrflow.ingest.pixels import encode_png, resize_longest

    src, dst, max_side = args
    ds = pydicom.dcmread(src)
    arr = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype("float32")
    lo, hi = float(arr.min()), float(arr.max())
    img = (arr - lo) / max(hi - lo, 1e-6)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        img = 1.0 - img
    Path(dst).write_bytes(encode_png(resize_longest(img, max_side), 16))


def run_one(
    mode: str, workers: int, inbox: Path, files: list[str], max_side: int
) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix=f"bench-{mode}-"))
    start = time.perf_counter()
    if mode == "floor":
        tasks = [(f, str(out / f"{i}.png"), max_side) for i, f in enumerate(files)]
        if workers == 1:
            for t in tasks:
                _floor_one(t)
        else:
            with get_context("fork").Pool(workers) as pool:
                pool.map(_floor_one, tasks, chunksize=2)
    else:
        from cxrflow.ingest import IngestConfig, run_ingest
        from cxrflow.keys import SecretKey

        cfg = IngestConfig(inbox, out, max_side=max_side, workers=workers, show_progress=False)
        run_ingest(cfg, SecretKey(b"bench-key-" * 4))
    seconds = time.perf_counter() - start
    peak_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return {"seconds": seconds, "files_per_s": len(files) / seconds, "peak_mb": peak_kb / 1024}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--files", type=int, default=60, help="approximate number of phantom images")
    p.add_argument("--min-side", type=int, default=1800)
    p.add_argument("--max-side", type=int, default=2800)
    p.add_argument("--out-side", type=int, default=1024, help="longest side of the written PNGs")
    p.add_argument("--inbox", type=Path, help="use these DICOM files instead of a fresh phantom")
    p.add_argument("--one", nargs=2, metavar=("MODE", "WORKERS"), help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.inbox is None:
        from cxrflow.phantom import generate_phantom

        args.inbox = Path(tempfile.mkdtemp(prefix="bench-phantom-"))
        generate_phantom(
            args.inbox,
            max(1, args.files // 3),
            seed=1,
            min_side=args.min_side,
            max_side=args.max_side,
            include_faulty=False,
        )
        (args.inbox / "ground_truth.parquet").unlink(missing_ok=True)
    files = sorted(str(f) for f in args.inbox.rglob("*") if f.is_file() and f.suffix != ".parquet")

    if args.one:
        mode, workers = args.one[0], int(args.one[1])
        print(json.dumps(run_one(mode, workers, args.inbox, files, args.out_side)))
        return

    size_mb = sum(Path(f).stat().st_size for f in files) / len(files) / 2**20
    print(f"{len(files)} DICOM files, mean {size_mb:.1f} MB, PNG longest side {args.out_side}")
    results: dict[tuple[str, int], dict[str, float]] = {}
    for mode in ("floor", "ingest"):
        for workers in (1, 2):
            cmd = [
                sys.executable,
                __file__,
                "--inbox",
                str(args.inbox),
                "--out-side",
                str(args.out_side),
                "--one",
                mode,
                str(workers),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[(mode, workers)] = json.loads(out.strip().splitlines()[-1])
    print(f"{'mode':<8}{'workers':>8}{'files/s':>10}{'s/file':>9}{'peak MB':>10}")
    for (mode, workers), r in results.items():
        rate = r["files_per_s"]
        print(f"{mode:<8}{workers:>8}{rate:>10.2f}{1 / rate:>9.3f}{r['peak_mb']:>10.0f}")
    for workers in (1, 2):
        ratio = (
            results[("floor", workers)]["files_per_s"] / results[("ingest", workers)]["files_per_s"]
        )
        print(f"ingest cost / floor cost, {workers} worker(s): {ratio:.2f}x (target <= 1.3x)")
    speedup = results[("ingest", 2)]["files_per_s"] / results[("ingest", 1)]["files_per_s"]
    print(f"ingest speed-up 2 workers vs 1: {speedup:.2f}x (target >= 1.7x)")
    _bench_burned_in(files, args.out_side)


def _bench_burned_in(files: list[str], out_side: int) -> None:
    """The OCR step alone (cxrflow.ingest.burned_in) on the bench's images, as ingest sees them."""
    import pydicom

    from cxrflow.ingest.burned_in import BurnedInTextCheck, applies, engine, suspect_burned_in_text
    from cxrflow.ingest.pixels import display_image, resize_longest

    check = BurnedInTextCheck()
    ocr = engine(check)
    if ocr is None:
        print("burned-in text check: skipped, tesseract is not installed (make ocr)")
        return
    seconds, in_scope, flagged = [], 0, 0
    for f in files:
        ds = pydicom.dcmread(f)
        img = resize_longest(display_image(ds), out_side)
        in_scope += applies(ds, check)
        verdict = suspect_burned_in_text(img, check)
        seconds.append(verdict.seconds)
        flagged += verdict.suspected
    ms = 1000 * sum(seconds) / len(seconds)
    print(
        f"burned-in text check ({ocr.name}, 1 worker): {ms:.0f} ms/image OCR'd, "
        f"max {1000 * max(seconds):.0f} ms; {in_scope}/{len(files)} images in the default scope "
        f"(portable/unknown-source CR/DX, US, SC): {ms * in_scope / len(files):.0f} ms/image "
        f"on average; {flagged} flagged (phantom images carry no text)"
    )


if __name__ == "__main__":
    main()
