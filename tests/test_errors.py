from __future__ import annotations

import inspect

import wking_device.errors as errors_module
from wking_device.errors import (
    BluetoothError,
    BluetoothReason,
    ConsentRequired,
    DeviceNotFound,
    WkingError,
)


def _error_classes() -> list[type[WkingError]]:
    return [
        obj
        for _, obj in inspect.getmembers(errors_module, inspect.isclass)
        if issubclass(obj, WkingError)
    ]


def test_every_error_is_in_the_docstring_tree() -> None:
    doc = errors_module.__doc__ or ""
    for cls in _error_classes():
        assert cls.__name__ in doc, cls.__name__


def test_every_error_is_exported() -> None:
    assert {cls.__name__ for cls in _error_classes()} <= set(errors_module.__all__)


def test_exit_codes_follow_the_cli_contract() -> None:
    assert ConsentRequired({"x"}).exit_code == 3
    assert DeviceNotFound("gone").exit_code == 4
    assert errors_module.UploadError("x").exit_code == 5
    assert errors_module.StorageError("x").exit_code == 6
    assert errors_module.LedgerTampered("x").exit_code == 7


def test_bluetooth_errors_carry_address_reason_and_remedy() -> None:
    err = DeviceNotFound("no speaker", address="C0:00:00:00:00:01")
    assert isinstance(err, BluetoothError)
    assert err.address == "C0:00:00:00:00:01"
    assert err.reason is BluetoothReason.NOT_FOUND
    assert err.remedy
    assert err.remedy in str(err)


def test_consent_required_names_missing_categories() -> None:
    err = ConsentRequired({"mac_addresses", "operation_logs"})
    assert err.missing == {"mac_addresses", "operation_logs"}
    assert "mac_addresses, operation_logs" in str(err)
