"""Profiles: advertisement matching, manufacturer data, advertising layout, models, UUIDs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wking_device.errors import AdvertisementError, UsageError
from wking_device.protocol import (
    BATTERY_LEVEL_UUID,
    BATTERY_SERVICE_UUID,
    COMPANY_ID_TESTING,
    DEVICE_INFORMATION_SERVICE_UUID,
    FIRMWARE_REVISION_UUID,
    HARDWARE_REVISION_UUID,
    LEGACY_ADV_MAX,
    MANUFACTURER_NAME_UUID,
    MODEL_NUMBER_UUID,
    MODELS,
    SERIAL_NUMBER_UUID,
    UNKNOWN_MODEL,
    WKING_COMMAND_CHAR_UUID,
    WKING_NOTIFY_CHAR_UUID,
    WKING_SERVICE_UUID,
    WKING_V1,
    AdvertisementFlags,
    DeviceProfile,
    FrameCodec,
    ModelInfo,
    Role,
    WkingV1Profile,
    build_advertising_data,
    build_manufacturer_data,
    build_scan_response,
    model_by_code,
    parse_advertising_data,
    parse_manufacturer_data,
)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_uuid_constants_are_full_lowercase_strings() -> None:
    expected_short = {
        DEVICE_INFORMATION_SERVICE_UUID: 0x180A,
        MANUFACTURER_NAME_UUID: 0x2A29,
        MODEL_NUMBER_UUID: 0x2A24,
        FIRMWARE_REVISION_UUID: 0x2A26,
        HARDWARE_REVISION_UUID: 0x2A27,
        SERIAL_NUMBER_UUID: 0x2A25,
        BATTERY_SERVICE_UUID: 0x180F,
        BATTERY_LEVEL_UUID: 0x2A19,
    }
    for full, short in expected_short.items():
        assert full == f"0000{short:04x}-0000-1000-8000-00805f9b34fb"
    vendor = [WKING_SERVICE_UUID, WKING_COMMAND_CHAR_UUID, WKING_NOTIFY_CHAR_UUID]
    assert all(UUID_RE.match(u) for u in vendor)
    assert len(set(vendor)) == 3


def test_models_table() -> None:
    assert len(MODELS) >= 3
    codes = {m.code for m in MODELS.values()}
    assert len(codes) == len(MODELS)
    for model_id, model in MODELS.items():
        assert model.id == model_id
        assert model.name.startswith("W-KING ")
        assert model_by_code(model.code) is model
        assert len(build_scan_response(model.name)) <= LEGACY_ADV_MAX
    assert model_by_code(0xEE) is None


def test_builtin_profile_satisfies_the_protocol() -> None:
    assert isinstance(WKING_V1, DeviceProfile)
    assert WKING_V1.id == "wking-v1"
    assert WKING_V1.service_uuid == WKING_SERVICE_UUID
    codec = WKING_V1.new_codec(Role.CENTRAL, mtu=185)
    assert isinstance(codec, FrameCodec)
    assert (codec.role, codec.mtu) == (Role.CENTRAL, 185)


@pytest.mark.parametrize(
    ("name", "uuids", "mfr", "expected"),
    [
        ("W-KING X10", [], {}, "x10"),
        ("w-king t9 pro", None, None, "t9-pro"),
        ("W-KING T9 Pro-4F2A", [], {}, "t9-pro"),
        ("W-KING D8 Mini", [], {}, "d8-mini"),
        ("W-KING Z99", [], {}, UNKNOWN_MODEL),
        (None, [WKING_SERVICE_UUID.upper()], {}, UNKNOWN_MODEL),
        (None, [], {COMPANY_ID_TESTING: b"WK\x03\x00"}, "t9-pro"),
        # Manufacturer data wins over the name.
        ("W-KING X10", [], {COMPANY_ID_TESTING: b"WK\x01\x07"}, "d8-mini"),
        # Malformed W-KING manufacturer data: still a W-KING; model from the name or unknown.
        ("W-KING X10", [], {COMPANY_ID_TESTING: b"WK"}, "x10"),
        (None, [], {COMPANY_ID_TESTING: b"WK\x02\x00\x00\x00"}, UNKNOWN_MODEL),
        (None, [], {COMPANY_ID_TESTING: b"WK\xee\x00"}, UNKNOWN_MODEL),
        (None, [WKING_SERVICE_UUID], {COMPANY_ID_TESTING: bytearray(b"WK\x02\x01")}, "x10"),
        # Foreign devices.
        (None, [], {}, None),
        ("JBL Flip 6", ["0000fe2c-0000-1000-8000-00805f9b34fb"], {0x0057: b"\x01\x02"}, None),
        ("", [], {COMPANY_ID_TESTING: b"XX\x02\x00"}, None),
        ("Speaker W-KING", [], {COMPANY_ID_TESTING: b""}, None),
        (None, [], {0x004C: b"WK\x02\x00"}, None),  # right payload, wrong company
    ],
)
def test_match(
    name: str | None, uuids: list[str] | None, mfr: dict[int, bytes] | None, expected: str | None
) -> None:
    assert WKING_V1.match(name, uuids, mfr) == expected


@settings(max_examples=200, deadline=None)
@given(
    name=st.none() | st.text(max_size=40),
    uuids=st.lists(st.text(max_size=40) | st.uuids().map(str), max_size=4),
    mfr=st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=30), max_size=3),
)
def test_match_never_raises(name: str | None, uuids: list[str], mfr: dict[int, bytes]) -> None:
    result = WKING_V1.match(name, uuids, mfr)
    assert result is None or result == UNKNOWN_MODEL or result in MODELS


@pytest.mark.parametrize(
    "payload",
    [b"", b"W", b"WK", b"WK\x01", b"WK\x01\x00\x00", b"wk\x01\x00", b"\x00\x00\x01\x00"],
)
def test_parse_manufacturer_data_is_strict(payload: bytes) -> None:
    with pytest.raises(AdvertisementError):
        parse_manufacturer_data(payload)


def test_parse_manufacturer_data() -> None:
    parsed = parse_manufacturer_data(b"WK\x02\x03")
    assert parsed.model is MODELS["x10"]
    assert parsed.flags == AdvertisementFlags.PAIRING | AdvertisementFlags.CHARGING
    future = parse_manufacturer_data(b"WK\x42\x80")
    assert future.model is None
    assert future.model_code == 0x42
    assert int(future.flags) == 0x80  # reserved bits kept, not an error
    with pytest.raises(AdvertisementError):
        parse_manufacturer_data("WK\x02\x00")  # type: ignore[arg-type]


def test_advertising_layout_fits_and_round_trips() -> None:
    for model in MODELS.values():
        flags = AdvertisementFlags.LOW_BATTERY
        adv = build_advertising_data(model, flags=flags)
        assert len(adv) <= LEGACY_ADV_MAX
        scan_response = build_scan_response(model.name)
        passive = parse_advertising_data(adv)
        assert passive.name is None  # the name is only in the scan response
        assert passive.service_uuids == (WKING_SERVICE_UUID,)
        assert passive.manufacturer_data == {
            COMPANY_ID_TESTING: build_manufacturer_data(model, flags)
        }
        assert WKING_V1.match(None, passive.service_uuids, passive.manufacturer_data) == model.id
        active = parse_advertising_data(adv, scan_response)
        assert active.name == model.name
        assert WKING_V1.match(active.name, (), {}) == model.id
    name_only = parse_advertising_data(
        build_advertising_data("x10", include_service_uuid=False, include_manufacturer_data=False)
    )
    assert name_only.service_uuids == ()
    assert name_only.manufacturer_data == {}


def test_advertising_builders_refuse_bad_input() -> None:
    with pytest.raises(UsageError, match="unknown model"):
        build_advertising_data("x11")
    with pytest.raises(UsageError, match="fit"):
        build_scan_response("W-KING " + "X" * 30)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x05\x09ab",  # runs past the end
        b"\x03\x09\xff\xfe",  # name not UTF-8
        b"\x05\x07\x00\x01\x02\x03",  # 128-bit UUID list of 4 bytes
        b"\x02\xff\x00",  # manufacturer data without a full company id
    ],
)
def test_parse_advertising_data_errors(raw: bytes) -> None:
    with pytest.raises(AdvertisementError):
        parse_advertising_data(raw)


def test_parse_advertising_data_skips_padding_and_other_types() -> None:
    raw = b"\x02\x0a\x08" + b"\x03\x09ab" + b"\x00\x00\x00"
    assert parse_advertising_data(raw).name == "ab"


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=62))
def test_parse_advertising_data_gives_fields_or_a_typed_error(raw: bytes) -> None:
    try:
        fields = parse_advertising_data(raw)
    except AdvertisementError:
        return
    assert WKING_V1.match(fields.name, fields.service_uuids, fields.manufacturer_data) in {
        None,
        UNKNOWN_MODEL,
        *MODELS,
    }


def test_a_second_profile_plugs_in_with_its_own_identifiers_and_models() -> None:
    oem_model = ModelInfo(id="oem-1", name="ACME Boom", code=0x01, battery_mah=900, output_w=5)
    oem = WkingV1Profile(
        id="wking-v1-oem",
        service_uuid="0000aaaa-1111-2222-3333-444455556666",
        name_prefix="ACME",
        models={oem_model.id: oem_model},
    )
    assert isinstance(oem, DeviceProfile)
    assert oem.match("ACME Boom 7", [], {}) == "oem-1"
    assert oem.match(None, [], {COMPANY_ID_TESTING: b"WK\x01\x00"}) == "oem-1"
    assert oem.match("W-KING X10", [], {}) is None  # not this profile's device
    assert WKING_V1.match("ACME Boom", [], {}) is None
