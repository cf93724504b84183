"""What a FUSE mount needs from the machine, checked before mounting.

Each failure a normal user meets is one :class:`~layerfs.errors.MountError` line
that says what to do, instead of libfuse's messages after the fact. Root (also a
user namespace's root, which mounts with mount(2) itself, as FUSE allows) needs
neither fusermount3 nor ``user_allow_other``.
"""

from __future__ import annotations

import os
import shutil
import stat

from .errors import MountError

FUSE_DEVICE = "/dev/fuse"
FUSE_CONF = "/etc/fuse.conf"


def check_fuse(fuse_options: set[str] | frozenset[str] = frozenset(), *,
               through_fusermount: bool = True) -> None:
    """Raise a one-line MountError if this process cannot mount FUSE with ``fuse_options``
    (``through_fusermount=False``: only the device, for a mount in a user namespace)."""
    if not os.path.exists(FUSE_DEVICE):
        raise MountError(f"{FUSE_DEVICE}: no FUSE device on this machine (load the fuse "
                         "module: modprobe fuse)")
    if not os.access(FUSE_DEVICE, os.R_OK | os.W_OK):
        st = os.stat(FUSE_DEVICE)
        raise MountError(
            f"{FUSE_DEVICE}: not readable and writable by you (mode "
            f"{stat.S_IMODE(st.st_mode):04o}, owner {st.st_uid}:{st.st_gid}); ask an "
            f"administrator to make it 0666 (chmod 0666 {FUSE_DEVICE}, the usual mode) "
            "or to add you to its group")
    if os.geteuid() == 0 or not through_fusermount:
        return
    helper = shutil.which("fusermount3")
    if helper is None:
        raise MountError("fusermount3: not found; install the fuse3 package to mount as a user")
    st = os.stat(helper)
    if not (st.st_mode & stat.S_ISUID and st.st_uid == 0):
        raise MountError(f"{helper}: not setuid root, so it cannot mount for you; as root: "
                         f"chown root {helper} && chmod u+s {helper} (or reinstall fuse3)")
    if "allow_other" in fuse_options and not user_allow_other():
        raise MountError(f"-o allow_other: {FUSE_CONF} does not have user_allow_other; add "
                         "that line to it (as root) or mount without allow_other")


def user_allow_other(path: str = FUSE_CONF) -> bool:
    """Whether fuse.conf lets users mount with allow_other (as fusermount3 reads it)."""
    try:
        with open(path) as conf:
            return any(line.split("#", 1)[0].strip() == "user_allow_other" for line in conf)
    except OSError:
        return False
