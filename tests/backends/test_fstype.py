"""The filesystem probe, and the SQLite queue refusing network filesystems."""

from __future__ import annotations

from pathlib import Path

import pytest

from tq_orchestrate.backends import _fstype, open_backend
from tq_orchestrate.backends._fstype import NETWORK_MAGIC, FsInfo, flag, mount_fstype, probe
from tq_orchestrate.backends.sqlite import SQLiteBackend
from tq_orchestrate.errors import ConfigurationError

MOUNTINFO = r"""22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:40 / /shared rw,relatime shared:2 - nfs4 server:/export rw,vers=4.2
31 30 0:41 / /shared/scratch rw - lustre 10.0.0.1@tcp:/scratch rw
32 22 0:42 / /home/me/remote\040dir rw - fuse.sshfs me@host:/ rw
33 22 0:43 / /var/lib/containers rw - fuse.fuse-overlayfs fuse-overlayfs rw
34 22 0:44 / /sharedness rw - ext4 /dev/vdb rw
"""


@pytest.fixture
def mountinfo(tmp_path: Path) -> str:
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    return str(path)


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/", "ext4"),
        ("/shared/data/q.db", "nfs4"),
        ("/shared/scratch/x", "lustre"),
        ("/sharedness/x", "ext4"),  # a prefix of the name is not a parent directory
        ("/home/me/remote dir/q", "fuse.sshfs"),
        ("/var/lib/containers/x", "fuse.fuse-overlayfs"),
    ],
)
def test_mountinfo_longest_prefix(mountinfo: str, path: str, fstype: str) -> None:
    assert mount_fstype(path, mountinfo) == fstype


@pytest.mark.parametrize(("magic", "name"), sorted(NETWORK_MAGIC.items()))
def test_network_magic_numbers(monkeypatch: pytest.MonkeyPatch, magic: int, name: str) -> None:
    monkeypatch.setattr(_fstype, "statfs_magic", lambda path: magic)
    monkeypatch.setattr(_fstype, "mount_fstype", lambda path: None)
    assert probe("/anywhere").network


@pytest.mark.parametrize(
    ("mounted", "network"), [("fuse.sshfs", True), ("fuse.fuse-overlayfs", False), ("fuse", True)]
)
def test_fuse_is_told_apart_by_its_subtype(
    monkeypatch: pytest.MonkeyPatch, mounted: str, network: bool
) -> None:
    monkeypatch.setattr(_fstype, "statfs_magic", lambda path: 0x65735546)
    monkeypatch.setattr(_fstype, "mount_fstype", lambda path: mounted)
    assert probe("/x") == FsInfo(mounted, network)


def test_without_statfs_the_mount_table_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fstype, "statfs_magic", lambda path: None)
    monkeypatch.setattr(_fstype, "mount_fstype", lambda path: "nfs")
    assert probe("/x") == FsInfo("nfs", True)


def test_local_tmp_is_not_network(tmp_path: Path) -> None:
    assert not probe(str(tmp_path / "not" / "yet")).network


@pytest.mark.parametrize(("text", "value"), [("1", True), ("true", True), ("0", False), ("no", False)])
def test_flag(text: str, value: bool) -> None:
    assert flag(text) is value
    with pytest.raises(ValueError):
        flag("perhaps")


@pytest.fixture
def on_nfs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fstype, "probe", lambda path: FsInfo("nfs4", True))


@pytest.mark.usefixtures("on_nfs")
def test_sqlite_refuses_a_network_filesystem(tmp_path: Path) -> None:
    backend = open_backend(f"sqlite://{tmp_path}/q.db")
    with pytest.raises(ConfigurationError) as info:
        backend.send_batch(["x"])
    text = str(info.value)
    for part in ("nfs4", f"fq://{tmp_path}", "SQS", "allow_network_fs"):
        assert part in text
    assert not (tmp_path / "q.db").exists()


@pytest.mark.usefixtures("on_nfs")
@pytest.mark.parametrize("query", ["?allow_network_fs=1", "?allow_network_fs=true"])
def test_sqlite_override_in_the_url(tmp_path: Path, query: str) -> None:
    backend = open_backend(f"sqlite://{tmp_path}/q.db{query}")
    assert backend.send_batch(["x"]) == []
    backend.close()


@pytest.mark.usefixtures("on_nfs")
def test_sqlite_override_as_keyword(tmp_path: Path) -> None:
    backend = SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db", allow_network_fs=True)
    assert backend.send_batch(["x"]) == []
    backend.close()


def test_sqlite_on_local_disk_is_not_probed_as_network(tmp_path: Path) -> None:
    backend = SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db")
    assert backend.send_batch(["x"]) == []
    backend.close()
