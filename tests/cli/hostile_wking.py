"""Run ``wking`` against a simulated fleet whose first speaker sends hostile strings.

Used by ``test_cli_terminal.py`` as ``python hostile_wking.py ARGS...``: the real CLI in a real
process, with the real simulator; only speaker 1's advertised name and Device Information
strings are replaced by the JSON object in ``HOSTILE_SPEAKER_STRINGS`` (field name to value).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from wking_device.cli import main
from wking_device.sim import SpeakerSpec

_original = SpeakerSpec.for_index.__func__  # type: ignore[attr-defined]
_hostile: dict[str, Any] = json.loads(os.environ.get("HOSTILE_SPEAKER_STRINGS", "{}"))


def _for_index(cls: type[SpeakerSpec], index: int, **overrides: Any) -> SpeakerSpec:
    if index == 1:
        overrides = {**_hostile, **overrides}
    spec: SpeakerSpec = _original(cls, index, **overrides)
    return spec


SpeakerSpec.for_index = classmethod(_for_index)  # type: ignore[assignment,method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
