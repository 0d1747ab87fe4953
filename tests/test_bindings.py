from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wking_device.bindings import Binding, Bindings
from wking_device.errors import StoreIntegrityError

ADDRESS = "C0:11:22:33:44:55"


@pytest.fixture(name="bindings")
def fixture_bindings(tmp_path: Path) -> Bindings:
    return Bindings(tmp_path / "cfg" / "devices.bin", os.urandom(32))


def test_bind_list_unbind(bindings: Bindings) -> None:
    assert bindings.load() == []
    bindings.bind(Binding(address=ADDRESS, name="W-KING X10 0001", model="x10"))
    bindings.bind(Binding(address="C0:00:00:00:00:02"))
    assert [b.address for b in bindings.load()] == [ADDRESS, "C0:00:00:00:00:02"]
    assert bindings.unbind(ADDRESS.lower()) is True
    assert bindings.unbind(ADDRESS) is False
    assert bindings.addresses() == {"C0:00:00:00:00:02"}


def test_rebinding_replaces(bindings: Bindings) -> None:
    bindings.bind(Binding(address=ADDRESS, alias="kitchen"))
    bindings.bind(Binding(address=ADDRESS.lower(), alias="garden"))
    assert [b.alias for b in bindings.load()] == ["garden"]


def test_file_is_private_and_holds_no_plaintext_address(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "devices.bin"
    Bindings(path, os.urandom(32)).bind(Binding(address=ADDRESS))
    blob = path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600
    for needle in (ADDRESS, ADDRESS.lower(), ADDRESS.replace(":", ""), bytes.fromhex("C011223344")):
        assert (needle.encode() if isinstance(needle, str) else needle) not in blob


def test_tampering_and_wrong_key_are_integrity_errors(tmp_path: Path) -> None:
    path = tmp_path / "devices.bin"
    Bindings(path, os.urandom(32)).bind(Binding(address=ADDRESS))
    with pytest.raises(StoreIntegrityError):
        Bindings(path, os.urandom(32)).load()
    with pytest.raises(StoreIntegrityError):  # nor can a wrong key overwrite it
        Bindings(path, os.urandom(32)).bind(Binding(address=ADDRESS))
    path.unlink()
    key = os.urandom(32)
    Bindings(path, key).bind(Binding(address=ADDRESS))
    raw = bytearray(path.read_bytes())
    raw[20] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreIntegrityError):
        Bindings(path, key).load()


_WORKER = """
import sys
from pathlib import Path
from wking_device.bindings import Binding, Bindings
path, key, worker = Path(sys.argv[1]), bytes.fromhex(sys.argv[2]), int(sys.argv[3])
bindings = Bindings(path, key)
for i in range(15):
    bindings.bind(Binding(address=f"C0:00:00:00:{worker:02X}:{i:02X}"))
"""


def test_concurrent_processes_lose_no_binding(tmp_path: Path) -> None:
    # `wking devices bind` and `unbind` in two terminals: each change is kept (and an unbind
    # is never undone by a bind that read the file before it)
    path = tmp_path / "cfg" / "devices.bin"
    key = os.urandom(32)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), key.hex(), str(worker)],
            stderr=subprocess.PIPE,
        )
        for worker in range(6)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()
    assert len(Bindings(path, key).load()) == 6 * 15
