"""``python -m wking_device`` runs the ``wking`` command."""

from __future__ import annotations

from wking_device.cli import main

if __name__ == "__main__":
    main()
