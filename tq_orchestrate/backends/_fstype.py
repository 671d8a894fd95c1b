"""Which kind of filesystem a path is on, and refusing network filesystems for SQLite.

SQLite's locking is unsafe on network and cluster filesystems (NFS, SMB, Lustre,
GPFS, BeeGFS, CephFS, FUSE mounts such as sshfs): two hosts can both believe they
hold the write lock, and WAL needs shared memory that does not cross hosts.

The probe asks ``statfs(2)`` for the filesystem's magic number (Linux, through
ctypes) and, for FUSE or when statfs is unavailable, reads the longest-prefix
mount in ``/proc/self/mountinfo`` for its type name.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError

__all__ = [
    "NETWORK_MAGIC",
    "FsInfo",
    "flag",
    "mount_fstype",
    "probe",
    "refuse_network_fs",
    "statfs_magic",
]

NETWORK_MAGIC: dict[int, str] = {
    0x6969: "nfs",
    0x517B: "smb",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",
    0x19830326: "beegfs",
    0x00C36400: "ceph",
    0x65735546: "fuse",
    0x5346414F: "afs",
    0x6B414653: "afs",
    0x73757245: "coda",
    0x01021997: "9p",
    0x7461636F: "ocfs2",
    0x01161970: "gfs2",
    0xAAD7AAEA: "panfs",
}
"""statfs ``f_type`` magic numbers of shared filesystems (linux/magic.h and vendors')."""

_NETWORK_NAMES = frozenset(
    {"nfs", "nfs4", "smb", "smb3", "smbfs", "cifs", "lustre", "gpfs", "beegfs", "ceph", "afs", "coda"}
    | {"9p", "ocfs2", "gfs2", "panfs", "glusterfs", "pvfs2", "orangefs", "fuse", "fuseblk"}
)
_LOCAL_FUSE = frozenset({"fuse-overlayfs", "lxcfs"})
"""FUSE filesystems that are local (rootless containers); every other FUSE mount counts as shared."""

_FUSE_MAGIC = 0x65735546


@dataclass(frozen=True)
class FsInfo:
    """A filesystem type name (``"nfs"``, ``"fuse.sshfs"``, ``"ext4"``...) and whether it is shared."""

    fstype: str
    network: bool


def statfs_magic(path: str) -> int | None:
    """``statfs(path).f_type``, or None where statfs cannot be called (not Linux, no libc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library already loaded (no ldconfig run)
        statfs = libc.statfs
    except (OSError, AttributeError):
        return None
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if statfs(os.fsencode(path), buf) != 0:
        return None
    width = ctypes.sizeof(ctypes.c_long)  # f_type is the first field, a word
    return int.from_bytes(buf.raw[:width], sys.byteorder) & 0xFFFFFFFF


def _unescape(field: str) -> str:
    """A mountinfo path field: octal escapes (``\\040`` for a space) decoded."""
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def mount_fstype(path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The type of the mount holding ``path`` (longest mount-point prefix), e.g. ``"fuse.sshfs"``."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, best_type = -1, None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right:
            continue
        point = _unescape(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, best_type = len(point), right.split()[0]
    return best_type


def _is_network_name(fstype: str) -> bool:
    base, _, sub = fstype.partition(".")
    if base in ("fuse", "fuseblk") and sub:
        return sub not in _LOCAL_FUSE
    return fstype in _NETWORK_NAMES


def probe(path: str) -> FsInfo:
    """The filesystem ``path`` (or its nearest existing parent) is on."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    magic = statfs_magic(existing)
    mounted = mount_fstype(existing)
    if magic is not None and magic != _FUSE_MAGIC:
        name = NETWORK_MAGIC.get(magic)
        return FsInfo(name or mounted or f"magic 0x{magic:x}", name is not None)
    fstype = mounted or ("fuse" if magic == _FUSE_MAGIC else "unknown")
    return FsInfo(fstype, _is_network_name(fstype))


def flag(value: Any) -> bool:
    """An on/off option from a bool or its text (1/0, true/false, yes/no, on/off)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def refuse_network_fs(path: str, url: str) -> None:
    """Raise ConfigurationError if the SQLite file ``path`` would be on a shared filesystem."""
    info = probe(os.path.dirname(path) or ".")
    if not info.network:
        return
    directory = os.path.dirname(path)
    raise ConfigurationError(
        f"{url}: {directory} is on a network or cluster filesystem ({info.fstype}), where SQLite's "
        f"locking is unsafe (two hosts can both write; WAL does not work across hosts). For a queue "
        f"in a shared directory use fq://{directory} (python-task-queue's file queue), or SQS; to use "
        f"SQLite there anyway (one host at a time), pass allow_network_fs=True (-o allow_network_fs=1)"
    )
