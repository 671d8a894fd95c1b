"""The probe and the SQLite refusal against a real FUSE mount (``fuse.sshfs`` by name).

A tiny FUSE server in this file answers the kernel over ``/dev/fuse`` (INIT,
GETATTR, STATFS; ENOSYS for the rest): enough for ``statfs`` and ``stat`` of the
mount point. Mounting needs root (CAP_SYS_ADMIN) and ``/dev/fuse``; the tests are
skipped where either is missing. A loopback NFS mount would need an NFS server,
which the test machines do not have.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tq_orchestrate.backends._fstype import mount_fstype, probe, statfs_magic
from tq_orchestrate.backends.sqlite import SQLiteBackend
from tq_orchestrate.errors import ConfigurationError

_IN = struct.Struct("<IIQQIIII")
_OUT = struct.Struct("<IiQ")
_GETATTR, _STATFS, _INIT, _DESTROY = 3, 17, 26, 38
_NO_REPLY = {2, 42}  # FORGET, BATCH_FORGET
_MNT_DETACH = 2


def _reply(opcode: int, body: bytes) -> tuple[int, bytes]:
    if opcode == _INIT:
        kernel_minor = struct.unpack_from("<II", body)[1]
        return 0, struct.pack("<IIIIHHI", 7, min(kernel_minor, 31), 0, 0, 16, 12, 65536)
    if opcode == _GETATTR:
        now = int(time.time())
        attr = struct.pack("<QQQQQQIIIIIIIIII", 1, 0, 0, now, now, now, 0, 0, 0, 0o40755, 2, 0, 0, 0, 4096, 0)
        return 0, struct.pack("<QII", 1, 0, 0) + attr
    if opcode == _STATFS:
        return 0, struct.pack("<QQQQQIIII6I", 1000, 500, 500, 100, 50, 4096, 255, 4096, 0, *[0] * 6)
    return -errno.ENOSYS, b""


def _serve(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, (1 << 20) + 4096)
        except OSError as e:
            if e.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                continue
            return  # ENODEV: unmounted
        _, opcode, unique, *_ = _IN.unpack_from(data)
        if opcode in _NO_REPLY:
            continue
        error, body = _reply(opcode, data[_IN.size :])
        try:
            os.write(fd, _OUT.pack(_OUT.size + len(body), error, unique) + body)
        except OSError:
            return
        if opcode == _DESTROY:
            return


@pytest.fixture
def sshfs_like_mount() -> Iterator[Path]:
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse")
    libc = ctypes.CDLL(None, use_errno=True)
    point = Path(tempfile.mkdtemp(prefix="tqo-fuse-"))
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    options = f"fd={fd},rootmode=40000,user_id=0,group_id=0".encode()
    if libc.mount(b"me@host:/", str(point).encode(), b"fuse.sshfs", 0, options) != 0:
        reason = os.strerror(ctypes.get_errno())
        os.close(fd)
        point.rmdir()
        pytest.skip(f"cannot mount FUSE here: {reason}")
    server = threading.Thread(target=_serve, args=(fd,), daemon=True)
    server.start()
    try:
        yield point
    finally:
        libc.umount2(str(point).encode(), _MNT_DETACH)
        os.close(fd)
        server.join(timeout=5)
        point.rmdir()


@pytest.mark.timeout(30)
def test_probe_sees_a_real_fuse_mount(sshfs_like_mount: Path) -> None:
    assert statfs_magic(str(sshfs_like_mount)) == 0x65735546
    assert mount_fstype(str(sshfs_like_mount)) == "fuse.sshfs"
    info = probe(str(sshfs_like_mount))
    assert (info.fstype, info.network) == ("fuse.sshfs", True)


@pytest.mark.timeout(30)
def test_sqlite_refuses_the_fuse_mount(sshfs_like_mount: Path) -> None:
    backend = SQLiteBackend.from_url(f"sqlite://{sshfs_like_mount}/q.db")
    with pytest.raises(ConfigurationError, match=r"fuse\.sshfs.*fq://"):
        backend.send_batch(["x"])
