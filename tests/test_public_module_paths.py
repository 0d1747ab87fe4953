"""Every exported class and function names the public module a user imports it from.

``repr``, ``help()``, pickling, API doc tools and tracebacks read ``__module__``: a public class
defined in a private module (``wking_device.protocol._vocabulary``) is re-homed by its package
(``wking_device.protocol``), as httpx does, and pickle still finds it there.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import importlib
import inspect
import pickle
import pkgutil
import subprocess
import sys
from typing import Any

import pytest


def _is_private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))


def _public_modules() -> tuple[str, ...]:
    """The package and every module below it with no ``_``-prefixed part (a new one counts)."""
    import wking_device  # noqa: PLC0415

    found = pkgutil.walk_packages(wking_device.__path__, "wking_device.")
    return ("wking_device", *(m.name for m in found if not _is_private(m.name)))


def _exported(modules: tuple[str, ...]) -> list[tuple[str, str, Any]]:
    """(public module, name, object) for every class and function the modules export."""
    found = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            value = getattr(module, name)
            if (
                inspect.isclass(value) or inspect.isfunction(value)
            ) and value.__module__.startswith("wking_device"):
                found.append((module_name, name, value))
    return found


def _checked() -> list[tuple[str, str, Any]]:
    return _exported(_public_modules())


def test_every_exported_name_reports_a_public_module_it_is_importable_from() -> None:
    assert {"wking_device.protocol", "wking_device.sim.pytest_plugin"} <= set(_public_modules())
    problems = []
    for where, name, value in _checked():
        module = value.__module__
        if _is_private(module):
            problems.append(f"{where}.{name}: {module}")
        elif getattr(importlib.import_module(module), value.__qualname__, None) is not value:
            problems.append(f"{where}.{name}: not importable from {module}")
    assert not problems, "\n".join(problems)


def test_a_name_exported_twice_reports_the_more_specific_package() -> None:
    # the root package re-exports its subpackages' names: they keep the subpackage
    import wking_device  # noqa: PLC0415

    assert wking_device.Speaker.__module__ == "wking_device.ble"
    assert wking_device.Paths.__module__ == "wking_device.config"
    assert wking_device.DeviceInfo.__module__ == "wking_device.models"
    assert wking_device.Subscription.__module__ == "wking_device"
    assert repr(wking_device.FrameCodec) == "<class 'wking_device.protocol.FrameCodec'>"


def test_every_exported_class_and_function_pickles_by_its_public_path() -> None:
    for where, name, value in _checked():
        assert pickle.loads(pickle.dumps(value)) is value, f"{where}.{name}"
        assert copy.deepcopy(value) is value, f"{where}.{name}"


def test_every_exported_enum_member_round_trips() -> None:
    enums = [v for _, _, v in _checked() if inspect.isclass(v) and issubclass(v, enum.Enum)]
    assert len(enums) > 10
    for cls in enums:
        for member in cls:
            assert pickle.loads(pickle.dumps(member)) is member, member
            assert copy.deepcopy(member) is member, member


def test_every_exported_error_round_trips() -> None:
    import wking_device.errors as errors  # noqa: PLC0415

    errors_made = 0
    for _, _, cls in _checked():
        if not (inspect.isclass(cls) and issubclass(cls, Exception)):
            continue
        try:
            error = cls("the speaker went away")
        except TypeError:
            continue  # other constructor arguments: tests/test_error_pickling.py builds every one
        errors_made += 1
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is cls, cls
        assert str(again) == str(error), cls
        assert type(copy.copy(error)) is cls, cls
    assert errors_made >= len(errors.__all__) - 15


NOT_PICKLABLE = {"WkingV1Profile": "its command tables are read-only mappingproxy objects"}


def _sample(cls: type) -> object | None:
    """An instance of a dataclass whose fields all have defaults, else None."""
    try:
        return cls()
    except Exception:  # noqa: BLE001 - a class that needs arguments is not sampled
        return None


def test_exported_dataclasses_and_models_round_trip() -> None:
    from wking_device.events import Connected  # noqa: PLC0415
    from wking_device.models import DeviceInfo  # noqa: PLC0415
    from wking_device.protocol import BatteryLevel  # noqa: PLC0415

    samples: list[object] = [
        Connected(),
        BatteryLevel(seq=1, level=40, charging=True),
        DeviceInfo(address="speaker-1", model="WK-1"),
    ]
    for _, _, cls in _checked():
        if (
            inspect.isclass(cls)
            and dataclasses.is_dataclass(cls)
            and cls.__name__ not in NOT_PICKLABLE
        ):
            sample = _sample(cls)
            if sample is not None:
                samples.append(sample)
    assert len(samples) > 5
    for sample in samples:
        assert pickle.loads(pickle.dumps(sample)) == sample, sample
        assert copy.deepcopy(sample) == sample, sample


def test_a_fresh_interpreter_reports_the_public_paths_of_lazy_names() -> None:
    # only the root package imported: its lazy names come from the subpackages, re-homed
    code = (
        "import pickle, sys, wking_device\n"
        "names = ('Speaker', 'Paths', 'Subscription', 'ConsentGate', 'Agent', 'FrameCodec')\n"
        "print(sorted({getattr(wking_device, n).__module__ for n in names}))\n"
        "assert pickle.loads(pickle.dumps(wking_device.Speaker)) is wking_device.Speaker\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(
        sorted(
            {
                "wking_device.ble",
                "wking_device.config",
                "wking_device",
                "wking_device.consent",
                "wking_device.agent",
                "wking_device.protocol",
            }
        )
    )


@pytest.mark.parametrize("module_name", ["wking_device.events", "wking_device.sim"])
def test_a_package_imported_alone_reports_public_paths(module_name: str) -> None:
    code = (
        f"import inspect, {module_name} as m\n"
        "print([n for n in m.__all__ if (inspect.isclass(v := getattr(m, n)) or "
        "inspect.isfunction(v)) and any(p.startswith('_') for p in v.__module__.split('.'))])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
