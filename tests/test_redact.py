from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
from typing import TYPE_CHECKING

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wking_device._redact import (
    _BARE,
    _FORMS,
    _PAIRS,
    _SHAPE,
    _WORD,
    MAC_RE,
    RedactingFilter,
    install_redaction,
    mac_hint,
    redact,
    redact_macs,
)
from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.models import Record
from wking_device.store import open_store

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

MAC = "C4:7F:51:9A:2B:E3"
KEY_HEX = "9f" * 32


def _forms(mac: str) -> list[str]:
    digits = mac.replace(":", "")
    out = []
    for d in (digits.upper(), digits.lower()):
        pairs = [d[i : i + 2] for i in range(0, 12, 2)]
        out += [":".join(pairs), "-".join(pairs), "_".join(pairs), "".join(pairs)]
        out.append(".".join([d[0:4], d[4:8], d[8:12]]))
    return out


@pytest.mark.parametrize("form", _forms(MAC))
def test_every_mac_notation_is_redacted(form: str) -> None:
    assert redact(f"connect to {form} failed") == "connect to [MAC] failed"


def test_key_material_is_redacted_and_ids_are_kept() -> None:
    record_id = "01a224e434117f9a9e9437ca9fcd46f7"
    text = redact(f"id {record_id} key {KEY_HEX} raw {bytes(range(20))!r}")
    assert record_id in text
    assert KEY_HEX not in text
    assert "\\x01" not in text
    assert text.count("[KEY]") == 2
    b64 = "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k="
    assert redact(f"kek {b64}") == "kek [KEY]"
    path = "/work/main/src/wking_device/store/_store_with_a_long_name.py"
    assert redact(path) == path


@pytest.fixture(name="output")
def fixture_output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s %(peer)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    uninstall = install_redaction()
    yield stream
    uninstall()
    root.removeHandler(handler)
    root.setLevel(old_level)


def _fail() -> None:
    raise ValueError(f"no answer from {MAC.replace(':', '-')}")


def test_package_records_are_redacted_at_every_level(output: io.StringIO) -> None:
    logger = logging.getLogger("wking_device.ble.test")
    extra = {"peer": MAC.lower()}
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
        logger.log(level, "speaker %s key %s", MAC, KEY_HEX, extra=extra)
    try:
        _fail()
    except ValueError as exc:
        logger.exception("failed: %s", str(exc), extra=extra)  # noqa: TRY401 - the case under test
        logger.debug("args: %r", exc.args, extra=extra, stack_info=True)
    text = output.getvalue()
    assert text.count("[MAC]") >= 10
    assert "ValueError" in text  # the traceback is kept, redacted
    for form in _forms(MAC):
        assert form not in text
    assert KEY_HEX not in text


def test_other_libraries_are_redacted_by_the_handler_filter(output: io.StringIO) -> None:
    logging.getLogger("bleak.backends.bluezdbus").debug(
        "/org/bluez/hci0/dev_%s", MAC.replace(":", "_"), extra={"peer": "-"}
    )
    assert "[MAC]" in output.getvalue()
    assert MAC.replace(":", "_") not in output.getvalue()


def test_filter_is_idempotent() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "a %s", (MAC,), None)
    assert RedactingFilter().filter(record)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "a [MAC]"


async def test_store_logs_carry_no_macs_or_keys(
    home: Path, output: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    paths = resolve_paths(home)
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    gate.grant(["operation_logs"], method="api")
    permit = gate.permit(["operation_logs"])
    store = open_store(paths, settings)
    try:
        record = Record(
            category="operation_logs",
            consent_id=permit.consent_ids["operation_logs"],
            policy_version=permit.policy_version,
            body={"address": MAC},
        )
        await store.append([record], permit)
        await store.purge("operation_logs")
    finally:
        await store.aclose()
    logging.getLogger("wking_device.test").info("done with %s", MAC, extra={"peer": "-"})
    text = output.getvalue() + caplog.text
    assert "purged" in text
    for form in _forms(MAC):
        assert form not in text


def test_uuids_stay_readable() -> None:
    # the last group of a UUID is 12 hex digits, but not a MAC
    uuid = "0000180a-0000-1000-8000-00805f9b34fb"
    assert redact(f"read {uuid} from {MAC}") == f"read {uuid} from [MAC]"


def test_importing_the_package_redacts_its_records_for_library_users() -> None:
    # A library user configures logging their own way and never calls install_redaction().
    code = (
        "import io, logging, wking_device\n"
        "out = io.StringIO()\n"
        "logging.basicConfig(stream=out, level=logging.DEBUG)\n"
        "logging.getLogger('wking_device.ble._speaker').debug('connect %s', 'C0:57:4B:00:00:02')\n"
        "logging.getLogger('somebody.else').debug('mine %s', 'C0:57:4B:00:00:03')\n"
        "print(out.getvalue())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "C0:57:4B:00:00:02" not in proc.stdout
    assert "connect" in proc.stdout
    # other libraries' records are theirs to configure
    assert "C0:57:4B:00:00:03" in proc.stdout


@pytest.mark.parametrize(
    "line",
    [
        "headers: {'Authorization': 'Bearer s3cr3t-t0k3n'}",
        "Authorization: bearer s3cr3t-t0k3n",
        "sent Bearer s3cr3t-t0k3n to the collector",
        'Authorization: Basic czNjcjN0LXQwazNu"',
    ],
)
def test_bearer_and_basic_credentials_are_redacted(line: str) -> None:
    # short tokens are below the key-size heuristics: the scheme word is what gives them away
    out = redact(line)
    assert "s3cr3t-t0k3n" not in out
    assert "czNjcjN0LXQwazNu" not in out
    assert "[TOKEN]" in out


def test_the_word_basic_alone_is_not_a_credential() -> None:
    assert redact("basic settings are fine") == "basic settings are fine"


_MAC_TEXT = st.text(alphabet='0123456789abcdefABCDEFxyz:-_. \\"\x1b\b\né', max_size=40)


@st.composite
def _texts_with_macs(draw: st.DrawFn) -> str:
    digits = draw(st.text(alphabet="0123456789abcdefABCDEF", min_size=12, max_size=12))
    pairs = [digits[i : i + 2] for i in range(0, 12, 2)]
    form = draw(
        st.sampled_from(
            [
                digits,
                ":".join(pairs),
                "-".join(pairs),
                "_".join(pairs),
                ".".join(pairs),
                ".".join([digits[0:4], digits[4:8], digits[8:12]]),
                f"abcd-{digits}",
            ]
        )
    )
    return draw(_MAC_TEXT) + form + draw(_MAC_TEXT)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(_MAC_TEXT, _texts_with_macs()))
def test_the_fast_mac_hint_never_misses_what_mac_re_finds(text: str) -> None:
    # the store trusts mac_hint to skip the exact check: it must be a superset of MAC_RE
    if MAC_RE.search(text):
        assert mac_hint(orjson.dumps({text: [text]}))


def test_the_fast_mac_hint_passes_ordinary_records() -> None:
    body = {
        "c": "01a231430fbc7476aed83ac2079f644d",
        "p": "1.1",
        "b": {
            "kind": "read",
            "started_at": 1733045123.4567891,
            "duration_s": 0.11234567890123457,
            "detail": {"char": "0000180a-0000-1000-8000-00805f9b34fb", "rssi": -61},
        },
    }
    assert not mac_hint(orjson.dumps(body))
    assert mac_hint(orjson.dumps({**body, "name": "fw-C0574B000001"}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SNC0574B000001", "SN[MAC]"),
        ("id 0xC0574B000001", "id 0x[MAC]"),
        ("C0574B000001v2", "[MAC]v2"),
        ("fwC0:57:4B:00:00:01", "fw[MAC]"),
        ("AC0-57-4B-00-00-01", "A[MAC]"),
        ("C0.57.4B.00.00.01", "[MAC]"),
    ],
)
def test_a_mac_glued_to_other_text_is_still_redacted(text: str, expected: str) -> None:
    # speakers and vendors write serial numbers as a prefix glued to the address
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "01a231430fbc7476aed83ac2079f644d",  # a record id: a longer run of hex digits
        "0000180a-0000-1000-8000-00805f9b34fb",  # a UUID's last group
        "sha256 " + "ab" * 32,
        "version 1.2.3.4",
    ],
)
def test_longer_hex_runs_and_versions_are_not_macs(text: str) -> None:
    assert MAC_RE.search(text) is None


def _mac_hint_before(data: bytes) -> bool:
    """mac_hint as it was before its prefilters (the reference the fast version must equal)."""
    shape = data.translate(_SHAPE)
    if b"\\" in shape or any(pairs in shape for pairs in _PAIRS):
        return True
    size = len(shape)
    for form in _FORMS:
        start = shape.find(form)
        while start >= 0:
            end = start + len(form)
            run = re.compile(rb"h*")
            if start and shape[start - 1] in _WORD:
                match = run.match(shape, start)
                assert match is not None
                start = shape.find(form, match.end())
                continue
            if end < size and shape[end] in _WORD:
                match = run.match(shape, end)
                assert match is not None
                start = shape.find(form, match.end())
                continue
            if (
                form is _BARE
                and data[start - 1 : start] == b"-"
                and shape[start - 5 : start] == b"hhhh:"
            ):
                start = shape.find(form, end)
                continue
            return True
    return False


_SHAPE_TEXT = st.text(alphabet='0123456789abcdefABCDEFxyz:-_.\\"é\x1b 1.5', max_size=80)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(_SHAPE_TEXT, _texts_with_macs()))
def test_the_prefiltered_mac_hint_decides_as_the_full_scan(text: str) -> None:
    # the prefilters (a short part of each separated form first) only skip work: same answer
    for data in (orjson.dumps({text: [text, 12.5]}), text.encode()):
        assert mac_hint(data) is _mac_hint_before(data), data


@pytest.mark.parametrize(
    "text",
    [
        "hh 12.34 and 1234.5678.9abc",  # a dotted-quad MAC behind a float
        "12:34 then C0:57:4B:00:00:01",
        "C0.57.4B.00.00.01",
        "0123456789abcdef0123456789abcdef C0574B000001",  # after a long run of hex digits
        "C0574B000001",
        "1234.5678.9abc",
    ],
)
def test_the_prefiltered_mac_hint_sees_each_form_after_a_near_miss(text: str) -> None:
    assert mac_hint(orjson.dumps({"c": text}))


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(_MAC_TEXT, _texts_with_macs()),
    st.one_of(_MAC_TEXT, _texts_with_macs()),
    st.one_of(_MAC_TEXT, _texts_with_macs()),
)
def test_the_scrub_of_a_whole_plaintext_misses_nothing_mac_re_finds(
    consent: str, version: str, text: str
) -> None:
    # the writers check a grant's head once and the rest per record: split at the first
    # ',"b":', no MAC-shaped text may fall through the cut, wherever it stands
    from wking_device._scrub import scrub_plaintext  # noqa: PLC0415

    for body in ({"x": text}, {text: 1, "b": [text]}, {"n": f'",{text}"b":'}):
        plaintext = orjson.dumps({"c": consent, "p": version, "b": body})
        scrubbed = scrub_plaintext(plaintext, "operation_logs")
        assert not any(MAC_RE.search(t) for t in _strings(orjson.loads(scrubbed))), scrubbed
        assert scrub_plaintext(scrubbed, "operation_logs") == scrubbed  # once is enough


def _strings(value: object) -> list[str]:
    """Every string of a JSON value: values and keys, at any depth."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


@pytest.mark.parametrize(
    "glued",
    [
        "AA:BB:CC:DD:EE:FFC0574B000001",  # a bare MAC right after a colon one
        "aa-bb-cc-dd-ee-ffc0:57:4b:00:00:01",
        "00:00:00:00:00:00000000000000",
        "C057.4B00.0001C0574B000001",
    ],
)
def test_a_mac_glued_to_the_end_of_another_is_redacted_too(glued: str) -> None:
    # the second only looks like a MAC once the first is replaced: one pass left it
    text = f"speaker {glued} lost"
    assert not MAC_RE.search(redact(text)), redact(text)
    body = redact_macs({glued: glued, "n": [glued]})
    assert not any(MAC_RE.search(t) for t in _strings(body)), body
