"""A stand-in for the kernel side of /dev/fuse: requests in, replies out, over a socket.

A SOCK_SEQPACKET pair keeps message boundaries as /dev/fuse does, so a
:class:`~layerfs.fuse.session.Session` serves one end unchanged while the
test writes requests to the other and reads the replies.
"""

from __future__ import annotations

import socket
import struct

import trio

from layerfs.fuse import abi

OFFERED = (1 << 64) - 1  # the kernel offers every capability


class FakeKernel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = trio.socket.from_stdlib_socket(sock)
        self.unique = 100
        self.uid = 0

    async def send(self, opcode: int, body: bytes = b"", *, nodeid: int = abi.ROOT_ID,
                   unique: int | None = None, length: int | None = None) -> int:
        if unique is None:
            self.unique += 2
            unique = self.unique
        size = abi.IN_HEADER.size + len(body) if length is None else length
        header = abi.IN_HEADER.pack(size, opcode, unique, nodeid, self.uid, 0, 1234, 0, 0)
        await self.sock.send(header + body)
        return unique

    async def receive(self) -> tuple[int, int, bytes]:
        """The next reply: (unique, error as a positive errno, payload)."""
        with trio.fail_after(5):
            message = await self.sock.recv(1 << 21)
        length, error, unique = abi.OUT_HEADER.unpack_from(message)
        assert length == len(message), "reply length field disagrees with the message"
        return unique, -error, message[abi.OUT_HEADER.size:]

    async def call(self, opcode: int, body: bytes = b"", *, nodeid: int = abi.ROOT_ID
                   ) -> tuple[int, bytes]:
        unique = await self.send(opcode, body, nodeid=nodeid)
        got, error, payload = await self.receive()
        assert got == unique
        return error, payload

    async def init(self, flags: int = OFFERED, minor: int = 45) -> tuple:
        body = abi.INIT_IN.pack(7, minor, 1 << 20, flags & 0xFFFFFFFF, flags >> 32) + bytes(44)
        error, payload = await self.call(abi.INIT, body, nodeid=0)
        assert error == 0
        return abi.INIT_OUT.unpack(payload)


def read_in(fh: int, offset: int, size: int) -> bytes:
    return abi.READ_IN.pack(fh, offset, size, 0, 0, 0, 0)


def parse_dirents(payload: bytes, plus: bool) -> list[tuple[bytes, int, int]]:
    """(name, ino, next offset) of each entry of a READDIR(PLUS) reply."""
    found = []
    position = 0
    while position < len(payload):
        if plus:
            position += abi.ENTRY_OUT.size
        ino, offset, namelen, _ = abi.DIRENT_HEAD.unpack_from(payload, position)
        start = position + abi.DIRENT_HEAD.size
        found.append((payload[start:start + namelen], ino, offset))
        position = abi.align8(start + namelen)
    return found


def unpack_entry(payload: bytes) -> tuple:
    return abi.ENTRY_OUT.unpack_from(payload)


def names(*parts: bytes) -> bytes:
    return b"".join(part + b"\0" for part in parts)


def u32(value: int) -> bytes:
    return struct.pack("<I", value)
