"""Names longer than NAME_MAX: ENAMETOOLONG for every operation, as the kernel
overlay answers (pjdfstest */02.t) -- not ENOENT from a lookup that found
nothing, nor what the operation would have said of an ordinary missing name.
"""

from __future__ import annotations

import stat

import pytest

from tests.support.layerspec import Dir, File
from tests.upper import ops
from tests.upper.test_ops_vs_kernel import run

pytestmark = pytest.mark.usefixtures("needs_kernel_overlay")

LONG = "x" * 256
LONGEST = "y" * 255


def test_names_past_name_max_are_too_long(scratch):
    layers = [{b"file": File(b"f"), b"dir": Dir()}]
    run(scratch, [
        ops.lstat(LONG),
        ops.lstat(f"dir/{LONG}"),
        ops.chmod(LONG, 0o600),
        ops.chown(LONG, 1, 1),
        ops.truncate(LONG, 3),
        ops.unlink(LONG),
        ops.rmdir(LONG),
        ops.rename(LONG, "other"),
        ops.rename("file", LONG),
        ops.link("file", LONG),
        ops.link(LONG, "other"),
        ops.symlink("file", LONG),
        ops.mknod(LONG, stat.S_IFCHR, 0),
        ops.mkfifo(LONG),
        ops.mkdir(f"dir/{LONG}"),
        ops.create(LONG, b"data"),
        ops.statvfs_namemax(),
        # The longest name that fits works.
        ops.create(LONGEST, b"data"),
        ops.rename(LONGEST, f"dir/{LONGEST}"),
        ops.unlink(f"dir/{LONGEST}"),
    ], layers=layers)
