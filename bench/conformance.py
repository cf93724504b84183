"""Run pjdfstest on writable overlays side by side: the kernel overlay,
fuse-overlayfs and layerfs, each over the same lower layer with a fresh upper
and work dir, and print the pass count of each.

pjdfstest (https://github.com/pjd/pjdfstest) is not part of this repository:
build it anywhere (``autoreconf -ifs && ./configure && make pjdfstest``) and
give its directory. Run as root (pjdfstest switches users and makes devices):

    sudo /tmp/venv/bin/python bench/conformance.py /var/tmp/pjdfstest
    sudo /tmp/venv/bin/python bench/conformance.py /var/tmp/pjdfstest \\
        --only layerfs --tests rename,link --failures

Each run mounts afresh (the FUSE ones with ``allow_other``, since pjdfstest
acts as other users), runs ``prove -rv TESTS`` inside the mount, and always
unmounts. Every failing case is listed in ``WORKDIR/NAME.failures`` (and with
``--failures`` on stdout, with those the kernel overlay passes marked).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import (  # noqa: E402
    Contender,
    FuseOverlayfs,
    KernelOverlay,
    Layerfs,
    MountSpec,
    Unavailable,
    mounted,
)

REPO = str(Path(__file__).resolve().parents[1])
DEFAULT_WORKDIR = "/var/tmp/layerfs-conformance"
PROBE = "lower-probe"


class SharedLayerfs(Layerfs):
    def mount_command(self, spec: MountSpec, mountpoint: str) -> list[str]:
        return [self.python, "-m", "layerfs", "mount", "-o",
                spec.overlay_options() + ",allow_other", mountpoint]


class SharedFuseOverlayfs(FuseOverlayfs):
    def mount_command(self, spec: MountSpec, mountpoint: str) -> list[str]:
        return ["fuse-overlayfs", "-o", spec.overlay_options() + ",allow_other", mountpoint]


@dataclass
class Result:
    name: str
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    """``FILE #N - message`` of each failing case."""
    broken: list[str] = field(default_factory=list)
    """Test files that ended before their plan (a crash, a hang cut short)."""
    seconds: float = 0.0
    note: str = ""


_FILE = re.compile(r"^(?P<file>\S+\.t) \.+ ?(?P<rest>.*)$")
_CASE = re.compile(r"^(?P<not>not )?ok (?P<n>\d+)(?P<rest>.*)$")
_PLAN = re.compile(r"^1\.\.(?P<n>\d+)")


def parse_prove(output: str, tests_root: str) -> tuple[int, list[str], list[str]]:
    """(passed, failing cases, broken files) from ``prove -v --merge`` output.

    A ``not ok`` marked ``# TODO`` counts as passed (as TAP says); a file that
    planned more cases than it ran has the missing ones counted as failed."""
    passed, failed, broken = 0, [], []
    current, planned, seen = None, 0, 0

    def close() -> None:
        nonlocal seen
        if current is not None and planned > seen:
            broken.append(f"{current}: ran {seen} of {planned}")
            failed.extend(f"{current} #{n} - not run" for n in range(seen + 1, planned + 1))

    for line in output.splitlines():
        match = _FILE.match(line)
        if match:
            close()
            current = os.path.relpath(match["file"], tests_root)
            planned, seen = 0, 0
            line = match["rest"]
        if current is None:
            continue
        if (plan := _PLAN.match(line)) is not None:
            planned = int(plan["n"])
            continue
        case = _CASE.match(line)
        if case is None:
            continue
        seen += 1
        if case["not"] and "# TODO" not in case["rest"]:
            failed.append(f"{current} #{case['n']}{case['rest']}")
        else:
            passed += 1
    close()
    return passed, failed, broken


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def case_of(failure: str) -> str:
    """``FILE #N`` of a failure line."""
    return failure.split(" - ")[0].split(" # ")[0]


def make_lower(base: Path) -> Path:
    """A small lower layer, so the mount root is a merged dir."""
    lower = base / "lower"
    (lower / "dir").mkdir(parents=True)
    (lower / PROBE).write_bytes(b"probe\n")
    (lower / "dir" / "file").write_bytes(b"lower file\n")
    return lower


def run_prove(command: list[str], cwd: str, timeout: float) -> tuple[str, bool]:
    """Run prove in its own process group (all of it is stopped on timeout or
    a signal, so nothing keeps the mount busy); its output, and whether it finished."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace",
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
        return output, True
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return output, False
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_one(contender: Contender, pjdfstest: Path, tests: list[str], workdir: Path,
            timeout: float) -> Result:
    base = workdir / contender.name
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    lower = make_lower(base)
    spec = MountSpec([str(lower)], str(base / "upper"), str(base / "work"))
    Path(spec.upper).mkdir()
    Path(spec.work).mkdir()
    result = Result(contender.name)
    tests_root = str(pjdfstest / "tests")
    command = ["prove", "-rv", "--merge", *(str(pjdfstest / "tests" / t) for t in tests)]
    log = workdir / f"{contender.name}.log"
    started = time.monotonic()
    try:
        with mounted(contender, spec, base / "mnt", PROBE) as mount:
            output, finished = run_prove(command, mount.path, timeout)
            if not finished:
                result.note = f"prove cut short after {timeout:.0f} s"
    except Unavailable as exc:
        result.note = f"unavailable: {exc}"
        return result
    result.seconds = time.monotonic() - started
    log.write_text(output)
    result.passed, result.failed, result.broken = parse_prove(output, tests_root)
    (workdir / f"{contender.name}.failures").write_text(
        "".join(line + "\n" for line in result.failed))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pjdfstest", type=Path,
                        help="a built pjdfstest checkout (holds the pjdfstest binary and tests/)")
    parser.add_argument("--only", default="kernel,fuse-overlayfs,layerfs",
                        help="comma-separated filesystems to run (default: all three)")
    parser.add_argument("--tests", default="",
                        help="comma-separated test dirs or files under tests/ (default: all)")
    parser.add_argument("--workdir", type=Path, default=Path(DEFAULT_WORKDIR),
                        help=f"where lowers, uppers, logs go (default {DEFAULT_WORKDIR})")
    parser.add_argument("--layerfs-repo", default=REPO,
                        help="the layerfs checkout to mount (default: this one)")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python that runs layerfs (default: this one)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds one filesystem's run may take (default 3600)")
    parser.add_argument("--failures", action="store_true",
                        help="list each filesystem's failing cases")
    args = parser.parse_args()

    pjdfstest = args.pjdfstest.resolve()
    if not os.access(pjdfstest / "pjdfstest", os.X_OK) or not (pjdfstest / "tests").is_dir():
        parser.error(f"{pjdfstest}: no built pjdfstest there (run make pjdfstest in it)")
    if os.geteuid() != 0:
        parser.error("pjdfstest needs root")
    if shutil.which("prove") is None:
        parser.error("prove (perl) is not installed")
    tests = [t for t in args.tests.split(",") if t] or ["."]
    everything = {"kernel": KernelOverlay(), "fuse-overlayfs": SharedFuseOverlayfs(),
                  "layerfs": SharedLayerfs(os.path.abspath(args.layerfs_repo), args.python)}
    wanted = [n for n in args.only.split(",") if n]
    unknown = [n for n in wanted if n not in everything]
    if unknown:
        parser.error(f"unknown filesystem(s): {', '.join(unknown)}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    # Stopped by a signal, unmount first (the mount context managers run on SystemExit);
    # SIGINT too, since a background job's shell ignores it.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _stop)

    results: list[Result] = []
    for name in wanted:
        contender = everything[name]
        try:
            contender.check()
        except Unavailable as exc:
            results.append(Result(name, note=f"unavailable: {exc}"))
            continue
        print(f"{name}: running pjdfstest...", file=sys.stderr, flush=True)
        results.append(run_one(contender, pjdfstest, tests, args.workdir, args.timeout))

    kernel = next((r for r in results if r.name == "kernel" and not r.note), None)
    kernel_failed = {case_of(f) for f in kernel.failed} if kernel else set()
    print(f"{'filesystem':16} {'passed':>7} {'failed':>7} {'seconds':>8}  note")
    for r in results:
        print(f"{r.name:16} {r.passed:7} {len(r.failed):7} {r.seconds:8.0f}  {r.note}")
        for b in r.broken:
            print(f"  broken: {b}")
    if args.failures:
        for r in results:
            print(f"\n{r.name} fails ({len(r.failed)}):")
            for f in r.failed:
                passes = kernel is not None and case_of(f) not in kernel_failed
                shown = f if len(f) <= 300 else f[:150] + " ... " + f[-100:]
                print(f"  {shown}{'  [kernel passes]' if passes else ''}")
    print(f"\nlogs and failure lists in {args.workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
