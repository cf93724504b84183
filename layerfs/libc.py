"""The C library, loaded once: the few system calls Python's os module lacks.

``renameat2`` (RENAME_NOREPLACE / EXCHANGE / WHITEOUT, for the upper dir),
``fallocate`` (with its mode flags), ``syncfs`` (the upper's sync), the raw
``syscall`` (``openat2``, for reading layers without following symlinks),
``mount``/``umount2`` (the native FUSE engine as root) and ``unshare``/``prctl``
(user namespaces). Each sets errno, read with
:func:`ctypes.get_errno` right after the call.
"""

from __future__ import annotations

import ctypes

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint)
libc.renameat2.restype = ctypes.c_int
libc.syncfs.argtypes = (ctypes.c_int,)
libc.syncfs.restype = ctypes.c_int
libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
libc.fallocate.restype = ctypes.c_int
libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p)
libc.mount.restype = ctypes.c_int
libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
libc.umount2.restype = ctypes.c_int
