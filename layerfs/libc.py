"""The C library, loaded once: the few system calls Python's os module lacks.

``renameat2`` (RENAME_NOREPLACE / EXCHANGE / WHITEOUT, for the upper dir),
``syncfs`` (the upper's sync) and the raw ``syscall`` (``openat2``, for
reading layers without following symlinks). Each sets errno, read with
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
