from __future__ import annotations

import os
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
