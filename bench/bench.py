#!/usr/bin/env python3
"""Benchmark layerfs against the kernel overlay and fuse-overlayfs.

Generates (once) a synthetic layered image, then for each run and each phase
mounts every contender afresh, one at a time, and measures; prints the
medians, the ratios of layerfs to each baseline and the issues' targets.
Run as root (the kernel overlay, dropping caches, native whiteouts), e.g.:

    sudo nice python3 bench/bench.py --quick
    sudo nice python3 bench/bench.py --json /tmp/bench.json

Every mount is unmounted and every daemon stopped also on Ctrl-C or failure.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from contenders import (
    Contender,
    FuseOverlayfs,
    KernelOverlay,
    Layerfs,
    MountFailed,
    Unavailable,
    cleanup_all,
)
from phases import PHASE_BY_NAME, PHASES, Bench
from report import evaluate, format_table, medians
from synth import ImageParams, ensure_image

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_WORKDIR = "/var/tmp/layerfs-bench"
FULL = {"files": 200_000, "layers": 5, "big_size": 2 << 30, "runs": 5}
QUICK = {"files": 20_000, "layers": 5, "big_size": 256 << 20, "runs": 3}
SIZE_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _size(text: str) -> int:
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in SIZE_SUFFIXES:
        return int(float(text[:-1]) * SIZE_SUFFIXES[text[-1]])
    return int(text)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark layerfs against the kernel overlay and fuse-overlayfs.")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR,
                        help=f"image cache and mountpoints (default {DEFAULT_WORKDIR})")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 20k files, 256 MiB big file, 3 runs")
    parser.add_argument("--files", type=int, help="files over all layers (default 200000)")
    parser.add_argument("--layers", type=int, help="file layers, besides the big-file one "
                                                   "(default 5)")
    parser.add_argument("--big-size", type=_size, help="size of the big file (default 2G)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed")
    parser.add_argument("--runs", type=int, help="runs per measurement (default 5; median)")
    parser.add_argument("--contenders", default="layerfs,kernel,fuse-overlayfs",
                        help="comma-separated subset of layerfs,layerfs-pyfuse3,layerfs-noxattrs,"
                             "layerfs-xattrs-on,layerfs-before,"
                             "kernel,fuse-overlayfs (layerfs-pyfuse3: on the pyfuse3 engine; "
                             "layerfs-noxattrs: with -o noxattrs; layerfs-xattrs-on: with "
                             "-o xattrs=on, xattrs served whatever the image holds)")
    parser.add_argument("--phases", default=",".join(p.name for p in PHASES),
                        help="comma-separated subset of " + ",".join(p.name for p in PHASES))
    parser.add_argument("--repo", default=str(BENCH_DIR.parent),
                        help="layerfs source tree put on PYTHONPATH (default: this checkout)")
    parser.add_argument("--before", metavar="REPO",
                        help="another layerfs source tree (e.g. a worktree of an earlier "
                             "commit), measured as contender layerfs-before in the same runs")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with layerfs's dependencies (trio, pyfuse3) installed")
    parser.add_argument("--json", metavar="FILE", help="also write all samples to FILE")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.runs < 1 or args.files < 1 or args.layers < 1:
        parser.error("--runs, --files and --layers must be positive")
    unknown = set(args.phases.split(",")) - set(PHASE_BY_NAME)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    return args


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _contenders(args: argparse.Namespace) -> tuple[list[Contender], dict[str, str]]:
    known: dict[str, Contender] = {
        "layerfs": Layerfs(os.path.abspath(args.repo), args.python),
        "layerfs-pyfuse3": Layerfs(os.path.abspath(args.repo), args.python, engine="pyfuse3"),
        "layerfs-noxattrs": Layerfs(os.path.abspath(args.repo), args.python, options="noxattrs"),
        "layerfs-xattrs-on": Layerfs(os.path.abspath(args.repo), args.python, options="xattrs=on"),
        "kernel": KernelOverlay(),
        "fuse-overlayfs": FuseOverlayfs(),
    }
    if args.before:
        known["layerfs-before"] = Layerfs(os.path.abspath(args.before), args.python,
                                          label="before")
    chosen, skipped = [], {}
    for name in args.contenders.split(","):
        if name not in known:
            raise SystemExit(f"unknown contender {name!r}")
        try:
            known[name].check()
            chosen.append(known[name])
        except Unavailable as exc:
            skipped[name] = str(exc)
            _log(f"skipping {name}: {exc}")
    return chosen, skipped


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _check_listings(bench: Bench, expected: int) -> list[str]:
    """Differences between the contenders' trees (they must all be equal)."""
    notes = []
    listings = bench.listings
    reference = "kernel" if "kernel" in listings else next(iter(listings), None)
    for name, listing in listings.items():
        if len(listing) != expected:
            notes.append(f"{name} lists {len(listing)} entries, the generator expects {expected}")
        if name == reference:
            continue
        missing = listings[reference] - listing
        extra = listing - listings[reference]
        if missing or extra:
            sample = sorted(missing)[:3] + sorted(extra)[:3]
            notes.append(f"{name} differs from {reference}: {len(missing)} entries missing, "
                         f"{len(extra)} extra or different, e.g. {sample}")
    return notes


def run(args: argparse.Namespace) -> int:
    root = os.geteuid() == 0
    if not root:
        _log("not root: caches cannot be dropped (cold = fresh mount only), no kernel "
             "overlay, AUFS whiteouts")
    contenders, skipped = _contenders(args)
    if not contenders:
        _log("nothing to benchmark")
        return 1
    workdir = Path(args.workdir)
    params = ImageParams(files=args.files, layers=args.layers, big_size=args.big_size,
                         seed=args.seed, native=root)
    image = ensure_image(workdir, params, _log)
    bench = Bench(image, workdir / "mnt", workdir / "scratch", can_drop_caches=root, log=_log)
    phases = [PHASE_BY_NAME[name] for name in args.phases.split(",")]
    samples: dict[str, dict[str, list[float]]] = {}
    errors: dict[str, str] = {}
    started = time.monotonic()
    for run_index in range(args.runs):
        # Rotate the order so no contender always runs right after another.
        shift = run_index % len(contenders)
        order = contenders[shift:] + contenders[:shift]
        rss: dict[str, int] = {}
        for phase in phases:
            for contender in order:
                if contender.name in errors:
                    continue
                bench.rss_kib = []
                try:
                    values = phase.run(bench, contender)
                except (MountFailed, RuntimeError, OSError, Unavailable) as exc:
                    errors[contender.name] = f"{phase.name}: {exc}"
                    _log(f"{contender.name} failed in {phase.name}, dropped: {exc}")
                    continue
                for key, value in values.items():
                    samples.setdefault(key, {}).setdefault(contender.name, []).append(value)
                if bench.rss_kib:
                    rss[contender.name] = max(rss.get(contender.name, 0), *bench.rss_kib)
                shown = ", ".join(f"{key}={value:.3g}" for key, value in values.items())
                _log(f"run {run_index + 1}/{args.runs} {phase.name:8} {contender.name:15} "
                     f"{shown}")
        for name, kib in rss.items():
            samples.setdefault("rss_peak_mb", {}).setdefault(name, []).append(kib * 1024 / 1e6)
    elapsed = time.monotonic() - started

    table = medians(samples)
    verdicts = evaluate(table)
    notes = _check_listings(bench, image.stats.get("expected_entries", 0))
    names = [c.name for c in contenders]
    print()
    print(f"layerfs benchmark: {params.files} files in {params.layers} layers + a "
          f"{params.big_size / 2**20:.0f} MiB big-file layer; median of {args.runs} runs; "
          f"{os.cpu_count()} CPUs, kernel {platform.release()}; {elapsed / 60:.1f} min")
    print(format_table(table, verdicts, names))
    if params.files != FULL["files"]:
        print(f"(the mount target is set for {FULL['files']} files; this image has "
              f"{params.files})")
    for name, reason in {**skipped, **errors}.items():
        print(f"{name}: not measured: {reason}")
    for note in notes:
        print(f"WARNING: {note}")
    if args.json:
        report = {
            "params": asdict(params),
            "image": {"root": image.root, "layers": image.layer_dirs, "stats": image.stats},
            "runs": args.runs,
            "phases": [phase.name for phase in phases],
            "environment": {
                "kernel": platform.release(), "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "versions": {c.name: c.version() for c in contenders},
            },
            "samples": samples,
            "medians": table,
            "targets": verdicts,
            "skipped": skipped,
            "errors": errors,
            "consistency": notes,
            "elapsed_seconds": round(elapsed, 1),
        }
        Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n")
        _log(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGHUP, _on_sigterm)
    try:
        return run(args)
    except KeyboardInterrupt:
        _log("interrupted")
        return 130
    finally:
        cleanup_all()


if __name__ == "__main__":
    sys.exit(main())
