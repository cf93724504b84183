"""layerfs's own FUSE engine: the kernel protocol of ``<linux/fuse.h>`` spoken on
``/dev/fuse`` from one trio loop. :mod:`layerfs.fuse.api` is the contract with
the filesystem (shared with the pyfuse3 adapter)."""
