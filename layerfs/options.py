"""Mount options: the ``-o a,b=c`` strings of mount(8) and the overlay's own.

Pure parsing. ``lowerdir=TOP:...:BOTTOM`` is the kernel overlay's spelling
(leftmost = top layer, ``\\:`` escapes a colon), so a kernel mount line can
be replayed as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UsageError
from .idmap import OPTION_FLAGS as ID_FLAGS
from .idmap import OPTION_KEYS as ID_KEYS

# Options passed to FUSE as they are.
FUSE_PASSTHROUGH = frozenset({"allow_other", "allow_root"})
# Generic mount(8) and overlay options that mean nothing to a read-only FUSE view.
IGNORED = frozenset({
    "ro", "rw", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime",
    "relatime", "norelatime", "strictatime", "diratime", "nodiratime", "auto", "noauto",
    "user", "nouser", "users", "defaults", "async", "sync", "_netdev", "nofail",
    "default_permissions", "lazytime", "nolazytime", "silent", "loud", "mand", "nomand",
})
IGNORED_KEYS = frozenset({
    "xino", "metacopy", "nfs_export", "uuid", "verity",
    "context", "fscontext", "defcontext", "rootcontext", "fsname", "subtype",
})
REDIRECT_DIR_VALUES = ("on", "off", "follow", "nofollow")
ENGINES = ("native", "pyfuse3")
XATTRS_VALUES = ("auto", "on", "off")


@dataclass
class MountOptions:
    lowerdirs: list[str] = field(default_factory=list)
    """Bottom first (the reverse of the kernel's lowerdir= order)."""
    upperdir: str | None = None
    workdir: str | None = None
    fuse: set[str] = field(default_factory=set)
    redirect_dir: str | None = None
    """on (layerfs's default with an upper dir), off, follow or nofollow."""
    userxattr: bool = False
    index: bool | None = None
    """``index=on|off``: hard-linked lower files copied up the kernel's inode index
    way (see layerfs/copyup.py); None: not given."""
    read_only: bool = False
    volatile: bool = False
    """Skip every sync to the upper dir (the kernel's ``volatile``)."""
    engine: str | None = None
    """The FUSE engine to serve with (``engine=native|pyfuse3``), None for the default."""
    xattrs: str = "auto"
    """``xattrs=auto|on|off`` (``noxattrs``, fuse-overlayfs's name, is ``off``): with
    ``off`` xattr requests are answered ENOSYS, so the kernel stops asking (``ls -l``
    asks for two on every entry); ``auto`` does so on a read-only mount once no layer
    is known to hold any (see layerfs/xattrcheck.py); ``on`` always serves them."""
    ids: dict[str, str | None] = field(default_factory=dict)
    """Owner options (squash_to_*, uidmapping=, gidmapping=): see layerfs/idmap.py."""


def split_escaped(value: str, separator: str, *, unescape: bool = True) -> list[str]:
    """Split on ``separator`` except where it is escaped with a backslash.

    With ``unescape=False`` the backslashes stay, for a second split."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            current.append(escaped if unescape else char + escaped)
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def unescape(value: str) -> str:
    return split_escaped(value, "\0")[0]


def parse_options(strings: list[str]) -> MountOptions:
    """Parse every ``-o`` argument given (each may hold several comma-separated options)."""
    options = MountOptions()
    for string in strings:
        for item in split_escaped(string, ",", unescape=False):
            if not item:
                continue
            key, has_value, value = item.partition("=")
            if key == "lowerdir" and has_value:
                layers = split_escaped(value, ":")
                if any(not part for part in layers):
                    raise UsageError(f"-o lowerdir={value}: empty layer path "
                                     "(data-only '::' layers are not supported)")
                options.lowerdirs = list(reversed(layers))
            elif key == "upperdir" and has_value:
                options.upperdir = unescape(value)
            elif key == "workdir" and has_value:
                options.workdir = unescape(value)
            elif key in FUSE_PASSTHROUGH and not has_value:
                options.fuse.add(key)
            elif key == "redirect_dir" and has_value:
                if value not in REDIRECT_DIR_VALUES:
                    raise UsageError(f"-o {item}: expected one of "
                                     f"{', '.join(REDIRECT_DIR_VALUES)}")
                options.redirect_dir = value
            elif key == "index" and has_value:
                if value not in ("on", "off"):
                    raise UsageError(f"-o {item}: expected on or off")
                options.index = value == "on"
            elif key == "engine" and has_value:
                if value not in ENGINES:
                    raise UsageError(f"-o {item}: expected one of {', '.join(ENGINES)}")
                options.engine = value
            elif key in ("ro", "rw") and not has_value:
                options.read_only = key == "ro"
            elif key == "noxattrs" and value in ("", "1"):
                options.xattrs = "off"
            elif key == "xattrs" and has_value:
                if value not in XATTRS_VALUES:
                    raise UsageError(f"-o {item}: expected one of {', '.join(XATTRS_VALUES)}")
                options.xattrs = value
            elif key in ("userxattr", "volatile") and not has_value:
                setattr(options, key, True)
            elif key in ID_KEYS and has_value or key in ID_FLAGS and not has_value:
                options.ids[key] = value if has_value else None  # checked by idmap
            elif key in IGNORED and not has_value or key in IGNORED_KEYS:
                continue
            else:
                raise UsageError(f"-o {item}: unknown mount option")
    return options
