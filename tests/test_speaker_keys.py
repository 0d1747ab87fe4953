"""Speaker keys and ``open_bindings``: a keyed pseudonym, never the MAC; reading writes nothing.

An attacker who reads records (a copied export, an upload) must not get a speaker's MAC back
from its key: the key is not the MAC in any spelling, not a plain hash of any spelling (those are
reversed by trying all 2**48 MACs), and another installation's key for the same MAC differs.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from wking_device import (
    BoundSpeaker,
    KeyMissing,
    SpeakerKeys,
    StoreIntegrityError,
    UsageError,
    open_bindings,
    resolve_paths,
)
from wking_device.bindings import BINDINGS_SECRET, Binding, Bindings, bindings_path
from wking_device.config import Paths
from wking_device.crypto import open_key_store

MAC = "C0:57:4B:00:00:01"


def _spellings(mac: str) -> list[str]:
    digits = mac.replace(":", "")
    return [s for base in (mac, digits) for s in (base, base.lower(), base.upper())] + [
        mac.replace(":", "-"),
        mac.replace(":", "-").lower(),
    ]


def _plain_hashes(mac: str) -> set[str]:
    found: set[str] = set()
    for spelling in _spellings(mac):
        data = spelling.encode()
        for name in ("md5", "sha1", "sha256", "sha512", "blake2b", "blake2s", "sha3_256"):
            found.add(hashlib.new(name, data).hexdigest())
        found.add(hashlib.sha256(bytes.fromhex(mac.replace(":", ""))).hexdigest())
    return found


def _paths(home: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.setenv("WKING_HOME", str(home))
    return resolve_paths()


def _bind(paths: Paths, *addresses: str) -> None:
    keys = open_key_store(paths)
    bindings = Bindings(bindings_path(paths), keys.secret(BINDINGS_SECRET))
    for address in addresses:
        bindings.bind(Binding(address=address, name="W-KING X8", alias="desk"))


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode)
        for p in sorted(root.rglob("*"))
    }


def test_the_key_is_keyed_not_the_mac_and_not_a_plain_hash() -> None:
    key = SpeakerKeys(os.urandom(32)).key(MAC)
    assert re.fullmatch(r"spk:[0-9a-f]{32}", key)
    digits = key.removeprefix("spk:")
    for spelling in _spellings(MAC):
        assert spelling.lower() not in key.lower()
    for plain in _plain_hashes(MAC):
        assert digits not in plain  # neither a plain hash nor a prefix or part of one


def test_the_key_depends_on_the_installation_and_not_on_spelling() -> None:
    ours, theirs = SpeakerKeys(os.urandom(32)), SpeakerKeys(os.urandom(32))
    assert ours.key(MAC) != theirs.key(MAC)
    assert {ours.key(s) for s in _spellings(MAC)} == {ours.key(MAC)}
    assert ours.key(MAC) != ours.key("C0:57:4B:00:00:02")


def test_a_secret_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(UsageError):
        SpeakerKeys(b"short")


def test_nothing_bound_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _paths(tmp_path / "home", monkeypatch)
    assert open_bindings(paths) == []
    assert not (tmp_path / "home").exists()


def test_open_bindings_reads_the_bindings_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _paths(tmp_path / "home", monkeypatch)
    _bind(paths, MAC, "C0:57:4B:00:00:02")
    before = _tree(tmp_path / "home")
    bound = open_bindings(paths)
    assert _tree(tmp_path / "home") == before
    assert [b.address for b in bound] == [MAC, "C0:57:4B:00:00:02"]
    assert all(isinstance(b, BoundSpeaker) and b.alias == "desk" for b in bound)
    # the same key the collectors of this installation give the speaker's records
    keys = SpeakerKeys.from_key_store(open_key_store(paths, create=False))
    assert bound[0].speaker == keys.key(MAC)
    assert bound[0].speaker != bound[1].speaker
    assert open_bindings(paths)[0].speaker == bound[0].speaker  # stable across opens


def test_bindings_without_their_key_store_are_a_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _paths(tmp_path / "home", monkeypatch)
    _bind(paths, MAC)
    other = _paths(tmp_path / "other", monkeypatch)
    other.config_dir.mkdir(parents=True)
    bindings_path(other).write_bytes(bindings_path(paths).read_bytes())
    before = _tree(tmp_path / "other")
    with pytest.raises(KeyMissing):
        open_bindings(other)  # no key store there: none is created
    assert _tree(tmp_path / "other") == before


def test_a_bindings_file_from_another_installation_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _paths(tmp_path / "a", monkeypatch)
    _bind(first, MAC)
    second = _paths(tmp_path / "b", monkeypatch)
    _bind(second, "C0:57:4B:00:00:09")
    bindings_path(second).write_bytes(bindings_path(first).read_bytes())
    with pytest.raises(StoreIntegrityError):
        open_bindings(second)
