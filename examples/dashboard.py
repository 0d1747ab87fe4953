"""A read-only dashboard: what consent is in force and what is stored, changing nothing.

Standalone (copy it anywhere). It reads the installation of ``WKING_HOME`` (or ``--home DIR``)
with read-only openers: no key, directory or file is created, and it works while an agent
holds the store. A home where nothing was collected yet is reported, not created.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from wking_device import (
    StoreNotFound,
    WkingError,
    load_settings,
    open_installation_gate,
    open_store,
    resolve_paths,
)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--home", type=Path, help="the installation (default: WKING_HOME)")
    args = parser.parse_args()

    paths = resolve_paths(args.home)
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings, readonly=True)
    print("consent:")
    for category, state in sorted(gate.states().items()):
        print(f"  {category:<16} {'granted' if state.granted else 'not granted'}")

    try:
        store = open_store(paths, settings, readonly=True)
    except StoreNotFound:
        print("records: none (nothing was collected in this installation yet)")
        return
    async with store:
        stats = await store.stats()
    print(f"records: {stats.pending} pending, {stats.claimed} being uploaded")
    for category, count in sorted(stats.by_category.items()):
        print(f"  {category:<16} {count}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except WkingError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
