from __future__ import annotations

import subprocess
import sys
import types

import wking_device

# Names every module has that are not API: the __future__ feature and typing helpers.
_NOT_API = {"annotations", "TYPE_CHECKING", "Any"}


def test_every_exported_name_resolves() -> None:
    for name in wking_device.__all__:
        assert getattr(wking_device, name) is not None, name


def test_all_matches_public_names() -> None:
    for name in wking_device.__all__:
        getattr(wking_device, name)  # load the lazy ones
    public = {
        name
        for name, value in vars(wking_device).items()
        if not name.startswith("_")
        and name not in _NOT_API
        and not isinstance(value, types.ModuleType)
    }
    assert set(wking_device.__all__) - {"__version__"} == public


def test_all_is_sorted() -> None:
    assert wking_device.__all__ == sorted(wking_device.__all__)


def test_unknown_attribute_is_an_attribute_error() -> None:
    assert not hasattr(wking_device, "NoSuchThing")


def test_import_is_cheap() -> None:
    # bleak, cryptography and sqlite3 load on first use of the names that need them
    code = (
        "import sys, wking_device; "
        "print(sorted(m for m in ('bleak', 'cryptography', 'sqlite3', 'aiohttp', 'bumble') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


# --- every type in every public signature is a public name (issue 12, finding 8) -------------

_PUBLIC_MODULES = (
    "wking_device",
    "wking_device.agent",
    "wking_device.ble",
    "wking_device.bindings",
    "wking_device.collect",
    "wking_device.config",
    "wking_device.consent",
    "wking_device.crypto",
    "wking_device.errors",
    "wking_device.events",
    "wking_device.models",
    "wking_device.policy",
    "wking_device.protocol",
    "wking_device.receiver",
    "wking_device.sim",
    "wking_device.sim.pytest_plugin",
    "wking_device.store",
    "wking_device.upload",
)


_MADE_BY_THE_LIBRARY_ONLY = {"Permit"}
"""Classes users never construct (only ``ConsentGate.permit`` makes a Permit): their
``__init__`` is not API."""


def _public_objects() -> dict[int, object]:
    import importlib  # noqa: PLC0415

    found: dict[int, object] = {}
    for module_name in _PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            found[id(value)] = value
    return found


_PLAIN_HINTS_PENDING: dict[str, str] = {
    # (where, why) pairs whose hints still need names imported for the type checker only: each
    # is an exported class's method, not a class or module-level function, and resolving it
    # plainly would import something heavy at run time or edit a module reserved to another task
}
"""Methods whose annotations ``typing.get_type_hints`` cannot resolve yet without help."""


def _namespace() -> dict[str, object]:
    """Every name the loaded modules define: the help the pending methods still need."""
    namespace: dict[str, object] = {}
    for name, module in list(sys.modules.items()):
        if name.startswith(("wking_device", "pydantic")) and module is not None:
            namespace.update(
                {k: v for k, v in vars(module).items() if not isinstance(v, types.ModuleType)}
            )
    return namespace


def _types_in(hint: object) -> set[type]:
    import typing  # noqa: PLC0415

    found: set[type] = set()
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        found.add(hint)
    for arg in typing.get_args(hint):
        if isinstance(arg, list):  # Callable[[...], R]
            for item in arg:
                found |= _types_in(item)
        else:
            found |= _types_in(arg)
    origin = typing.get_origin(hint)
    if isinstance(origin, type):
        found.add(origin)
    return found


def _signatures(obj: object) -> list[tuple[str, object]]:
    """(where, callable-or-class-with-annotations) pairs to read hints from."""
    import inspect  # noqa: PLC0415

    items: list[tuple[str, object]] = []
    if inspect.isclass(obj):
        items.append((obj.__qualname__, obj))  # class-level annotations (dataclass fields)
        for name, member in vars(obj).items():
            if name.startswith("_") and name not in {"__init__", "__aenter__", "__enter__"}:
                continue
            if name == "__init__" and obj.__qualname__ in _MADE_BY_THE_LIBRARY_ONLY:
                continue
            if isinstance(member, property) and member.fget is not None:
                items.append((f"{obj.__qualname__}.{name}", member.fget))
            elif isinstance(member, classmethod | staticmethod):
                items.append((f"{obj.__qualname__}.{name}", member.__func__))
            elif inspect.isfunction(member):
                items.append((f"{obj.__qualname__}.{name}", member))
    elif inspect.isfunction(obj):
        items.append((obj.__qualname__, obj))
    return items


def test_every_type_in_a_public_signature_is_exported() -> None:
    import inspect  # noqa: PLC0415
    import typing  # noqa: PLC0415

    public = _public_objects()
    problems: list[str] = []
    for obj in list(public.values()):
        for where, target in _signatures(obj):
            try:
                if where in _PLAIN_HINTS_PENDING:
                    module = sys.modules.get(getattr(target, "__module__", ""), None)
                    globalns = {**_namespace(), **(vars(module) if module else {})}
                    hints = typing.get_type_hints(target, globalns=globalns)
                else:
                    # plainly, as pydantic, FastAPI, cattrs and dataclass tooling call it
                    hints = typing.get_type_hints(target)
            except Exception as exc:  # noqa: BLE001 - reported below
                problems.append(f"{where}: hints do not resolve ({exc})")
                continue
            if inspect.isclass(target):
                hints = {k: v for k, v in hints.items() if not k.startswith("_")}
            for hint in hints.values():
                for cls in _types_in(hint):
                    if not cls.__module__.startswith("wking_device"):
                        continue
                    if id(cls) not in public:
                        problems.append(f"{where}: {cls.__module__}.{cls.__qualname__}")
    assert not problems, "\n".join(sorted(set(problems)))


def test_every_error_is_exported_at_the_top() -> None:
    from wking_device import errors  # noqa: PLC0415

    assert set(errors.__all__) <= set(wking_device.__all__)


def test_the_split_session_store_and_agent_classes_resolve_their_hints_plainly() -> None:
    # the module splits declared the base classes' state for the type checker only: at run
    # time these classes carry no annotation naming an import made for the type checker
    import typing  # noqa: PLC0415

    from wking_device.agent import Agent  # noqa: PLC0415
    from wking_device.ble import Speaker  # noqa: PLC0415
    from wking_device.store import RecordStore  # noqa: PLC0415

    for cls in (Speaker, RecordStore, Agent):
        assert not {k for k in typing.get_type_hints(cls) if not k.isupper()}, cls


def test_every_public_class_and_function_resolves_its_hints_plainly() -> None:
    # no extra globals: a name imported only for the type checker is a NameError here
    import inspect  # noqa: PLC0415
    import typing  # noqa: PLC0415

    failures: list[str] = []
    for obj in _public_objects().values():
        if inspect.isclass(obj) or inspect.isfunction(obj):
            try:
                typing.get_type_hints(obj)
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(f"{obj.__module__}.{obj.__qualname__}: {exc!r}")
    assert not failures, "\n".join(sorted(failures))


def test_the_pending_methods_still_need_help() -> None:
    # a method fixed since must leave _PLAIN_HINTS_PENDING, so the plain check covers it again
    import typing  # noqa: PLC0415

    found = {
        where: target
        for obj in _public_objects().values()
        for where, target in _signatures(obj)
        if where in _PLAIN_HINTS_PENDING
    }
    assert set(found) == set(_PLAIN_HINTS_PENDING)
    resolved = []
    for where, target in found.items():
        try:
            typing.get_type_hints(target)
        except NameError:
            continue
        resolved.append(where)
    assert not resolved, resolved


def test_hints_resolve_in_a_fresh_interpreter() -> None:
    # the lazy names load on demand: nothing else needs to have imported them first
    code = (
        "import inspect, typing, wking_device, wking_device.ble, wking_device.sim; "
        "[typing.get_type_hints(v) for m in (wking_device, wking_device.ble) for n in m.__all__ "
        "if inspect.isclass(v := getattr(m, n)) or inspect.isfunction(v)]; "
        "typing.get_type_hints(wking_device.sim.SimScanner); "
        "typing.get_type_hints(wking_device.open_store); print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_public_subpackages_load_on_first_attribute_access() -> None:
    # annotations written wking_device.crypto.KeyStore resolve without importing crypto first
    code = (
        "import sys, wking_device\n"
        "assert 'wking_device.crypto' not in sys.modules\n"
        "keys = wking_device.crypto.KeyStore\n"
        "assert 'wking_device.crypto' in sys.modules and keys.__name__ == 'KeyStore'\n"
        "assert not hasattr(wking_device, 'no_such_module')\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_upload_and_bindings_hints_name_the_classes_themselves() -> None:
    import typing  # noqa: PLC0415

    from wking_device.bindings import SpeakerKeys  # noqa: PLC0415
    from wking_device.config import UploadSettings  # noqa: PLC0415
    from wking_device.consent import ConsentGate  # noqa: PLC0415
    from wking_device.crypto import KeyStore, MacPseudonymizer  # noqa: PLC0415
    from wking_device.store import RecordStore  # noqa: PLC0415
    from wking_device.upload import OTLPSender, Uploader, UploadTarget  # noqa: PLC0415

    assert typing.get_type_hints(SpeakerKeys.from_key_store)["keys"] is KeyStore
    assert typing.get_type_hints(UploadTarget.resolve)["upload"] is UploadSettings
    hints = typing.get_type_hints(Uploader.__init__)
    assert hints["store"] is RecordStore
    assert hints["gate"] is ConsentGate
    assert hints["sender"] is OTLPSender
    assert hints["pseudonymizer"] == MacPseudonymizer | None


def test_loading_upload_or_bindings_loads_no_store_consent_crypto_or_config() -> None:
    # the hints above are resolved lazily: importing the modules that declare them stays light
    code = (
        "import sys, wking_device.upload, wking_device.bindings\n"
        "print(sorted(m for m in sys.modules if m.startswith(('wking_device.store', "
        "'wking_device.consent', 'wking_device.crypto', 'wking_device.config'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_the_agent_hints_resolve_plainly_and_loading_the_agent_stays_light() -> None:
    # Agent.__init__ names the store and the uploader as wking_device.X: resolving its hints
    # loads them, importing the agent does not
    code = (
        "import sys, typing, wking_device.agent\n"
        "heavy = ('sqlite3', 'aiohttp', 'wking_device.store', 'wking_device.upload')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "hints = typing.get_type_hints(wking_device.agent.Agent.__init__)\n"
        "from wking_device.store import RecordStore\n"
        "from wking_device.upload import Uploader\n"
        "assert hints['store'] is RecordStore, hints\n"
        "assert hints['uploader'] == Uploader | None, hints\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[]", "ok"]


def test_the_fault_plan_hook_resolves_plainly_and_each_plan_has_its_own_observers() -> None:
    import typing  # noqa: PLC0415

    from wking_device.sim import FaultPlan  # noqa: PLC0415

    assert typing.get_type_hints(FaultPlan.model_post_init) == {
        "context": typing.Any,
        "return": type(None),
    }
    seen: list[str] = []
    first, second = FaultPlan(), FaultPlan.model_construct()
    first.observe(seen.append)
    second.in_range = False
    first.in_range = False
    assert seen == ["in_range"]
