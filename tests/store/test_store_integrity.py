"""Bit flips, a full disk, the size cap, crypto-shredding against copies, MACs on disk."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
from typing import TYPE_CHECKING

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.crypto import KeyFileBackend, key_dir, open_key_store
from wking_device.errors import StoreFull, StoreIntegrityError, WrongKey
from wking_device.models import Record
from wking_device.store import DB_FILE, open_store

if TYPE_CHECKING:
    from pathlib import Path

MAC = "C4:7F:51:9A:2B:E3"
OTHER_MAC = "0a:1b:2c:3d:4e:5f"


async def _append_until_full(store, records: list[Record], permit) -> tuple[list[Record], bool]:
    """Append one by one; return the acknowledged records and whether StoreFull was raised."""
    acknowledged: list[Record] = []
    for record in records:
        try:
            await store.append([record], permit)
        except StoreFull:
            return acknowledged, True
        acknowledged.append(record)
    return acknowledged, False


def _flip(path: Path, needle: bytes, at: int = 0) -> None:
    data = bytearray(path.read_bytes())
    offset = data.find(needle)
    assert offset >= 0, "needle not in file"
    data[offset + at] ^= 0x01
    path.write_bytes(bytes(data))


async def test_bit_flip_quarantines_only_the_affected_records(
    paths, settings, store, make_record, permit
) -> None:
    records = [make_record(n=i) for i in range(20)]
    await store.append(records, permit)
    await store.aclose()  # checkpoints the WAL into the database file
    db = paths.data_dir / DB_FILE
    conn = sqlite3.connect(db)
    payload5 = conn.execute(
        "SELECT payload FROM records WHERE record_id = ?", (records[5].record_id,)
    ).fetchone()[0]
    conn.close()
    _flip(db, payload5, at=len(payload5) // 2)  # inside the ciphertext
    # a plaintext column bound by the AD (in the table row, followed by the category)
    _flip(db, records[9].record_id.encode() + b"operation_logs", at=31)
    reopened = open_store(paths, settings)
    try:
        exported = await reopened.export()
        assert len(exported) == 18
        assert {r.record_id for r in exported} == {
            r.record_id for i, r in enumerate(records) if i not in (5, 9)
        }
        stats = await reopened.stats()
        assert stats.quarantined == 2
        assert stats.total == 18
        # quarantined records stay aside and are never handed to the uploader
        assert len(await reopened.claim(100)) == 18
    finally:
        reopened.close()


async def test_damaged_database_is_refused_on_open(
    paths, settings, store, make_record, permit
) -> None:
    await store.append([make_record()], permit)
    await store.aclose()
    db = paths.data_dir / DB_FILE
    data = bytearray(db.read_bytes())
    data[0:16] = b"not a database!!"
    db.write_bytes(bytes(data))
    with pytest.raises(StoreIntegrityError) as info:
        open_store(paths, settings)
    assert info.value.exit_code == 7


# the page limit is set on the writer thread's connection (a writer process has its own)
@pytest.mark.parametrize("writer", ["thread"])
async def test_database_full_raises_store_full_and_keeps_everything(
    paths, store, make_record, permit
) -> None:
    kept = [make_record(n=i) for i in range(50)]
    await store.append(kept, permit)

    def limit() -> int:
        (pages,) = store._conn.execute("PRAGMA page_count").fetchone()
        store._conn.execute(f"PRAGMA max_page_count = {pages + 3}")
        return int(pages)

    await store._submit(limit)  # SQLITE_FULL for real: the database may not grow past this
    big = "x" * 2000
    added, full = await _append_until_full(
        store, [make_record(n=i, pad=big) for i in range(200)], permit
    )
    assert full
    acknowledged = kept + added
    assert len(acknowledged) < 250
    exported = await store.export()
    assert {r.record_id for r in exported} == {r.record_id for r in acknowledged}
    await store._submit(lambda: store._conn.execute("PRAGMA max_page_count = 1073741823"))
    await store.append([make_record(n=-1)], permit)
    assert (await store.stats()).total == len(acknowledged) + 1


def _can_mount(target: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


async def test_real_full_disk_on_a_tiny_tmpfs(tmp_path: Path) -> None:
    mnt = tmp_path / "tiny"
    if not _can_mount(mnt):
        pytest.skip("cannot mount a tmpfs here (needs root); covered by max_page_count")
    try:
        paths = resolve_paths(mnt / "home")
        paths.ensure()
        settings = load_settings(paths)
        gate = open_installation_gate(paths, settings)  # a permit of this installation
        gate.grant(["operation_logs"], method="api")
        permit = gate.permit(["operation_logs"])
        store = open_store(paths, settings)
        try:
            candidates = [
                Record(
                    category="operation_logs",
                    consent_id=permit.consent_ids["operation_logs"],
                    policy_version=permit.policy_version,
                    body={"n": i, "pad": "y" * 1500},
                )
                for i in range(2000)
            ]
            acknowledged, full = await _append_until_full(store, candidates, permit)
            assert full
            assert acknowledged
            exported = await store.export()
            assert {r.record_id for r in exported} == {r.record_id for r in acknowledged}
        finally:
            store.close()
        reopened = open_store(paths, settings)
        try:
            ids = {r.record_id for r in await reopened.export()}
            assert ids == {r.record_id for r in acknowledged}
        finally:
            reopened.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)  # noqa: ASYNC221 - cleanup


async def test_size_cap_evicts_lowest_priority_first_and_counts(
    paths, settings, gate, make_record, permit
) -> None:
    store = open_store(paths, settings, max_bytes=40_000)
    try:
        diag = [make_record("diagnostics", n=i, pad="d" * 200) for i in range(60)]
        for chunk in range(0, 60, 10):
            await store.append(diag[chunk : chunk + 10], permit)
        logs = [make_record("operation_logs", n=i, pad="o" * 200) for i in range(100)]
        for chunk in range(0, 100, 10):
            await store.append(logs[chunk : chunk + 10], permit)
        stats = await store.stats()
        assert stats.evicted > 0
        assert stats.bytes <= 40_000
        kept = await store.export()
        kept_logs = [r for r in kept if r.category == "operation_logs"]
        kept_diag = [r for r in kept if r.category == "diagnostics"]
        # diagnostics (lower priority) went first; the newest logs are all there
        assert len(kept_logs) > len(kept_diag)
        assert kept_logs[-1].record_id == logs[-1].record_id
        assert stats.evicted == 160 - stats.total
        # a lower-priority record cannot push out higher-priority ones
        only_logs = (await store.stats()).by_category.get("diagnostics", 0) == 0
        if only_logs:
            with pytest.raises(StoreFull):
                await store.append([make_record("diagnostics", pad="d" * 50_000)], permit)
    finally:
        store.close()


async def test_purge_shreds_a_category_in_copies_taken_earlier(
    paths, settings, tmp_path: Path
) -> None:
    external = KeyFileBackend(tmp_path / "usb-key" / "wking.kek")
    open_key_store(paths, backend=external)  # the KEK lives outside the data directory
    gate = open_installation_gate(paths, settings)  # finds the external key by itself
    gate.grant(["operation_logs", "mac_addresses"], method="api")
    permit = gate.permit(["operation_logs", "mac_addresses"])

    def rec(category: str, n: int) -> Record:
        return Record(
            category=category,
            consent_id=permit.consent_ids[category],
            policy_version=permit.policy_version,
            body={"n": n, "address": MAC} if category == "mac_addresses" else {"n": n},
        )

    store = open_store(paths, settings)
    await store.append([rec("mac_addresses", i) for i in range(5)], permit)
    await store.append([rec("operation_logs", i) for i in range(5)], permit)
    await store.aclose()
    copy = tmp_path / "copy-before-purge"
    shutil.copytree(paths.data_dir, copy)

    store = open_store(paths, settings)
    assert await store.purge("mac_addresses") == 5
    remaining = await store.export()
    assert [r.category for r in remaining] == ["operation_logs"] * 5
    await store.aclose()

    # the attacker holds the old copy and even the KEK in force now: it opens nothing there
    stolen = resolve_paths(copy.parent / "attacker")
    shutil.copytree(copy, stolen.data_dir)
    with pytest.raises(WrongKey):
        open_key_store(stolen, create=False, backend=external)
    kek = external.load()
    assert kek is not None
    doc = json.loads((key_dir(stolen) / "keystore.json").read_text())
    wrapped = [base64.b64decode(e["wrapped"]) for e in doc["deks"]]
    assert wrapped
    for blob in wrapped:
        for ad in (
            None,
            b"",
            *(
                f"wking-wrap|{doc['store_id']}|dek:{e['id']}:{e['category']}:{e['epoch']}".encode()
                for e in doc["deks"]
            ),
        ):
            with pytest.raises(InvalidTag):
                AESGCM(kek).decrypt(blob[:12], blob[12:], ad)
    assert not (copy / "keys" / "master.key").exists()
    mode = stat.S_IMODE((tmp_path / "usb-key" / "wking.kek").stat().st_mode)
    assert mode == 0o600


async def test_key_file_inside_the_copy_cannot_protect_it(
    paths, settings, store, make_record, permit, tmp_path: Path
) -> None:
    """The documented limit of the lowest level: the copy carries its own key."""
    await store.append([make_record("device_info")], permit)
    await store.aclose()
    copy = resolve_paths(tmp_path / "copy")
    shutil.copytree(paths.data_dir, copy.data_dir)
    store = open_store(paths, settings)
    await store.purge("device_info")
    await store.aclose()
    old = open_store(copy, settings)
    try:
        assert [r.category for r in await old.export()] == ["device_info"]
    finally:
        old.close()


def _scan(home: Path, phase: str) -> None:
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == DB_FILE for p in files)
    for path in files:
        data = path.read_bytes()
        for mac in (MAC, OTHER_MAC):
            for needle in _encodings(mac):
                assert needle not in data, f"{mac} as {needle!r} found in {path} ({phase})"


def _encodings(mac: str) -> list[bytes]:
    digits = mac.replace(":", "")
    raw = bytes.fromhex(digits)
    texts = set()
    for case in (str.upper, str.lower):
        d = case(digits)
        pairs = [d[i : i + 2] for i in range(0, 12, 2)]
        texts |= {
            ":".join(pairs),
            "-".join(pairs),
            "".join(pairs),
            ".".join([d[0:4], d[4:8], d[8:12]]),
        }
        texts.add(":".join(reversed(pairs)))
        texts.add("".join(reversed(pairs)))
    out = {raw, raw[::-1], base64.b64encode(raw), base64.b64encode(raw[::-1])}
    for text in texts:
        out |= {text.encode(), text.encode("utf-16-le"), text.encode("utf-16-be")}
    return sorted(out)


async def test_no_mac_address_reaches_disk_in_any_encoding(
    paths, settings, store, make_record, permit, home: Path
) -> None:
    records = [
        make_record("mac_addresses", address=MAC, adapter=OTHER_MAC, n=i) for i in range(30)
    ] + [make_record("operation_logs", note=f"speaker {MAC.lower()}", n=i) for i in range(30)]
    await store.append(records, permit)
    await store.claim(10)
    exported = await store.export()
    assert any(r.body.get("address") == MAC for r in exported)
    # scan with the WAL still present, then again after the checkpoint on close
    for phase in ("open", "closed"):
        if phase == "closed":
            await store.aclose()
        _scan(home, phase)
    for path in key_dir(paths).iterdir():
        if path.is_file() and not path.name.endswith(".lock"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    with contextlib.suppress(FileNotFoundError):
        assert stat.S_IMODE((key_dir(paths) / "master.key").stat().st_mode) == 0o600
