#!/usr/bin/env python3
"""The sizes of the page-cache folios that hold a file, as root.

    sudo python3 bench/folios.py FILE

Maps FILE, touches each page (a page already cached is mapped as it is: the
cache is read, not changed; a page not cached is read in first), then reads
each page's frame number from /proc/self/pagemap and its flags from
/proc/kpageflags: a compound head starts a folio of several pages, tails
continue it. Prints how many folios of each size hold the file. Used to see
whether two FUSE servers' page caches differ (bench/README.md, "The big file
again"): a warm read copies from those folios.
"""

from __future__ import annotations

import argparse
import collections
import mmap
import os
import struct
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")
KPF_COMPOUND_HEAD = 1 << 15
KPF_COMPOUND_TAIL = 1 << 16
PAGEMAP_PRESENT = 1 << 63
PAGEMAP_PFN = (1 << 55) - 1


def folio_sizes(path: str) -> tuple[collections.Counter[int], int]:
    """Folios by size in pages, and the pages not present."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            return collections.Counter(), 0
        with mmap.mmap(file.fileno(), size, prot=mmap.PROT_READ) as mapped:
            view = memoryview(mapped)
            for offset in range(0, size, PAGE):
                view[offset]  # map the page
            start = _mapping_start(os.path.realpath(path))
            pages = (size + PAGE - 1) // PAGE
            with open("/proc/self/pagemap", "rb") as pagemap:
                pagemap.seek(start // PAGE * 8)
                entries = struct.unpack(f"<{pages}Q", pagemap.read(pages * 8))
            view.release()
    folios: collections.Counter[int] = collections.Counter()
    missing = 0
    run = 0
    with open("/proc/kpageflags", "rb") as kpageflags:
        for entry in entries:
            if not entry & PAGEMAP_PRESENT:
                missing += 1
                continue
            kpageflags.seek((entry & PAGEMAP_PFN) * 8)
            (flags,) = struct.unpack("<Q", kpageflags.read(8))
            if flags & KPF_COMPOUND_TAIL and run:
                run += 1
                continue
            if run:
                folios[run] += 1
            run = 1
    if run:
        folios[run] += 1
    return folios, missing


def _mapping_start(path: str) -> int:
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip("\n").endswith(" " + path):
                return int(line.split("-", 1)[0], 16)
    raise SystemExit(f"{path}: mapping not found in /proc/self/maps")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("folios.py: needs root (frame numbers in /proc/self/pagemap)", file=sys.stderr)
        return 2
    try:
        folios, missing = folio_sizes(args.file)
    except OSError as exc:
        print(f"folios.py: {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    for pages in sorted(folios):
        count = folios[pages]
        print(f"{pages * PAGE // 1024:>8} KiB folios: {count:>8} ({pages * count * PAGE >> 20} MiB)")
    if missing:
        print(f"pages not present: {missing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
