"""The native engine: what layerfs.mount drives to mount, serve and unmount.

``mount`` happens before the process daemonizes (so its errors reach the
terminal) and the /dev/fuse descriptor survives the fork; ``serve`` runs in
the daemon's trio loop; ``close`` unmounts and lets the descriptor go. The
pyfuse3 adapter has the same shape.
"""

from __future__ import annotations

import os

from ..errors import MountError
from . import mounting
from .api import Operations
from .session import Session


class NativeEngine:
    """layerfs's own implementation of the FUSE protocol (:mod:`layerfs.fuse.session`)."""

    name = "native"
    zero_message_opens = True
    """The filesystem may answer OPEN/OPENDIR with ENOSYS: the kernel then opens
    without asking (FUSE_NO_OPEN_SUPPORT and FUSE_NO_OPENDIR_SUPPORT are asked
    for at INIT; every kernel since 5.1 grants them)."""

    def __init__(self, *, debug: bool = False, passthrough: bool = False,
                 posix_acl: bool = False, readdirplus_auto: bool = False) -> None:
        self.debug = debug
        self.passthrough = passthrough
        """Ask for FUSE passthrough (Opened.backing_fd): root, kernel 6.9+."""
        self.posix_acl = posix_acl
        """Ask for FUSE_POSIX_ACL: the kernel checks and caches ACLs itself (it then
        asks for system.posix_acl_* once per inode instead of on every listing)."""
        self.readdirplus_auto = readdirplus_auto
        """Let the kernel list without attributes when nothing stats the entries
        (FUSE_READDIRPLUS_AUTO) instead of always with them."""
        self._mount: mounting.Mount | None = None
        self._ops: Operations | None = None
        self._session: Session | None = None
        self._terminated = False

    def mount(self, ops: Operations, mountpoint: str, options: set[str]) -> None:
        """Mount at ``mountpoint`` with libfuse-style ``options``; MountError says why not."""
        if self._mount is not None:
            raise MountError(f"{mountpoint}: this engine already serves {self._mount.mountpoint}")
        self._mount = mounting.mount(mountpoint, options)
        self._ops = ops

    @property
    def fd(self) -> int:
        if self._mount is None:
            raise RuntimeError("not mounted")
        return self._mount.fd

    async def serve(self) -> None:
        """Serve until the mount goes away or :meth:`terminate` is called."""
        if self._mount is None or self._ops is None:
            raise RuntimeError("serve() before mount()")
        allowed = frozenset({0, os.getuid()}) if self._mount.allow_root else None
        self._session = Session(self._mount.fd, self._ops, debug=self.debug,
                                passthrough=self.passthrough, posix_acl=self.posix_acl,
                                readdirplus_auto=self.readdirplus_auto, allowed_uids=allowed)
        if self._terminated:
            self._session.terminate()
        try:
            await self._session.run()
        finally:
            self._session = None

    def terminate(self) -> None:
        """Make :meth:`serve` return (from a task of its trio run, e.g. on SIGTERM)."""
        self._terminated = True
        if self._session is not None:
            self._session.terminate()

    def close(self, unmount: bool) -> None:
        """Unmount (when asked and still mounted) and release the descriptor."""
        mount, self._mount = self._mount, None
        if mount is None:
            return
        try:
            if unmount and mounting.is_mounted(mount.target):
                try:
                    mounting.unmount(mount.mountpoint)
                except MountError:
                    mounting.unmount(mount.mountpoint, lazy=True)  # busy: detach it
        finally:
            os.close(mount.fd)
            if mount.watcher_socket is not None:
                mount.watcher_socket.close()  # an auto_unmount watcher finishes now
