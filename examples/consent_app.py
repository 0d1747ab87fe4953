"""An app that embeds consent: ask, collect under a permit, honour a withdrawal at once.

Standalone (copy it anywhere). It uses a throw-away installation in a temporary directory
(pass ``--home DIR`` to keep one) and records a few operation events of its own. The
withdrawal at the end shreds
the records the app stored: no ``attach`` call is needed, the store watches the ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from wking_device import (
    ConsentRequired,
    OperationEvent,
    OperationKind,
    Outcome,
    WkingError,
    load_settings,
    open_installation_gate,
    open_store,
    resolve_paths,
)
from wking_device.collect import OperationLogCollector


def ask(question: str, *, assume_yes: bool) -> bool:
    """The app's own consent dialogue (answered "yes" with --yes)."""
    if assume_yes:
        print(f"{question} [y/N] y")
        return True
    return input(f"{question} [y/N] ").strip().lower() in {"y", "yes"}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--home", type=Path, help="the installation (default: a temporary one)")
    parser.add_argument("--yes", action="store_true", help="answer the consent question yes")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="wking-consent-app-"))

    paths = resolve_paths(home)
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    try:
        gate.permit(["operation_logs"])
    except ConsentRequired as missing:
        print(f"not yet allowed: {sorted(missing.missing)}")
        if not ask("Keep a log of Bluetooth operations on this machine?", assume_yes=args.yes):
            print("nothing collected")
            return
        gate.grant(["operation_logs"], method="api")

    async with open_store(paths, settings) as store:
        async with OperationLogCollector(gate, store, adapter_mac="") as collector:
            for kind in (OperationKind.SCAN, OperationKind.CONNECT, OperationKind.DISCONNECT):
                collector.on_event(OperationEvent(kind=kind, outcome=Outcome.OK))
        print(f"stored {len(await store.export(['operation_logs']))} records")

        gate.withdraw(["operation_logs"], method="api")
        print(f"after withdrawal: {len(await store.export(['operation_logs']))} records")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except WkingError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
