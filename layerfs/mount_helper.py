"""``mount.fuse.layerfs``: images in mount(8) and fstab.

    mount -t fuse.layerfs IMAGE MOUNTPOINT -o ro[,upperdir=U,workdir=W,cache-dir=D,...]
    IMAGE  MOUNTPOINT  fuse.layerfs  ro,cache-dir=/var/cache/layerfs,nofail  0 0

mount(8) runs ``/sbin/mount.fuse.layerfs IMAGE MOUNTPOINT -o OPTIONS`` when it
exists, else mount.fuse3, which runs the program named by the type's subtype,
``layerfs IMAGE MOUNTPOINT -o OPTIONS`` (``layerfs`` hands such a call here).
The options become ``layerfs mount`` arguments: ``format=``, ``image=``,
``platform=``, ``cache-dir=``, ``log=``, ``max-layer-size=``, ``max-entries=``,
``authfile=``, ``lazy`` and ``insecure`` are its flags; ``upperdir=``,
``workdir=``, ``lowerdir=``... stay ``-o`` options; generic ones (``ro``, ``nodev``,
``noauto``, ``x-*``...) are accepted. It returns once the mount is live (the
daemon serves in the background; ``umount MOUNTPOINT`` ends it). As root the
mount is made with ``allow_other``, as a system-wide mount is used.
"""

from __future__ import annotations

import sys

from .cli import main as layerfs_main
from .mountargs import is_helper_call, mount_arguments

__all__ = ["is_helper_call", "main", "mount_arguments"]


def main(argv: list[str] | None = None) -> int:
    return layerfs_main(mount_arguments(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
