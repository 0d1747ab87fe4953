"""``wking data status``: counts, the loss counter, the key-store level, exit 6 without a key."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner

from wking_device.cli import cli
from wking_device.crypto import key_dir
from wking_device.store import open_store


def _status(home) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["--home", str(home), "data", "status", "--json"])
    return result.exit_code, (json.loads(result.output) if result.exit_code == 0 else {})


def test_status_of_a_fresh_home(home) -> None:
    code, data = _status(home)
    assert code == 0
    assert data["records"] == {
        "total": 0,
        "pending": 0,
        "claimed": 0,
        "rejected": 0,
        "by_category": {},
    }
    assert data["key_store"] is None
    assert not (home / "data" / "records.sqlite3").exists()  # status creates nothing


def test_status_counts_records_while_the_writer_is_open(
    home, paths, settings, gate, make_record, permit
) -> None:
    del gate
    store = open_store(paths, settings, max_bytes=12_000)

    async def fill() -> None:
        for i in range(30):
            await store.append(
                [make_record("diagnostics", n=i, pad="d" * 300), make_record(n=i)], permit
            )
        await store.claim(5)

    try:
        asyncio.run(fill())
        code, data = _status(home)  # read-only: works beside the writer
    finally:
        store.close()
    assert code == 0
    records = data["records"]
    assert records["total"] == sum(records["by_category"].values())
    assert records["by_category"]["operation_logs"] == 30
    assert records["claimed"] == 5
    assert data["evicted"] > 0
    assert data["evicted"] + records["total"] == 60
    assert data["quarantined"] == 0
    assert data["key_store"] == "key-file"


def test_status_without_the_master_key_exits_6(
    home, paths, settings, gate, make_record, permit
) -> None:
    del gate
    store = open_store(paths, settings)
    asyncio.run(store.append([make_record()], permit))
    store.close()
    (key_dir(paths) / "master.key").unlink()
    result = CliRunner().invoke(cli, ["--home", str(home), "data", "status", "--json"])
    assert result.exit_code == 6
    assert "key" in result.output.lower()
