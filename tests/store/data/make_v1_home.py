"""Make ``v1-home/``: an installation written by the store of schema version 1 (before issue 7).

Run against the source of commit 7ee1552 (the last one with schema 1), from the repository root::

    git archive 7ee1552 src | tar -x -C /tmp/v1
    PYTHONPATH=/tmp/v1/src .venv/bin/python tests/store/data/make_v1_home.py

The key store id is forced to ``0012345678901234``: schema 1 declared ``meta.value ANY``, so SQLite
kept it as the integer 12345678901234 (the leading zeros are lost) and that store could never be
opened again (``WrongKey``); the script gets past that check once to write records. Records are
dated :data:`CREATED` and one of them is left claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path

from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.crypto import KeyFileBackend, key_dir, open_key_store
from wking_device.errors import WrongKey
from wking_device.models import Record
from wking_device.store import open_store

CREATED = 1_800_000_000.0
STORE_ID = "0012345678901234"
HERE = Path(__file__).parent


async def main() -> None:
    home = HERE / "v1-home"
    shutil.rmtree(home, ignore_errors=True)
    paths = resolve_paths(home)
    paths.ensure()
    real = os.urandom
    os.urandom = lambda n: bytes.fromhex(STORE_ID) if n == 8 else real(n)  # type: ignore[assignment]
    try:
        keys = open_key_store(
            paths, create=True, backend=KeyFileBackend(key_dir(paths) / "master.key")
        )
    finally:
        os.urandom = real  # type: ignore[assignment]
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    categories = ["operation_logs", "device_info", "diagnostics", "mac_addresses"]
    gate.grant(categories, method="api")
    permit = gate.permit(categories)
    with contextlib.suppress(WrongKey):  # the bug: the id came back as a number
        open_store(paths, settings, keys=keys, clock=lambda: CREATED)
    keys.store_id = 12345678901234  # type: ignore[assignment] - only to get past that check
    store = open_store(paths, settings, keys=keys, clock=lambda: CREATED)
    keys.store_id = STORE_ID
    records = []
    for n, category in enumerate(["operation_logs", "device_info", "diagnostics"] * 2):
        body: dict[str, object] = {"n": n, "kind": "connect"}
        if n == 0:
            body["speaker_mac"] = "C0:57:4B:00:00:01"
        record = Record(
            category=category,
            consent_id=permit.consent_ids[category],
            policy_version=permit.policy_version,
            body=body,
            created_at=CREATED + n,
        )
        records.append(record)
    await store.append(records, permit)
    await store.claim(1)
    await store.aclose()


if __name__ == "__main__":
    asyncio.run(main())
