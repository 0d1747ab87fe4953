from __future__ import annotations

import pytest

from wking_device.errors import UsageError
from wking_device.policy import (
    CATALOG,
    CATEGORY_IDS,
    dependents_of,
    get_category,
    validate_categories,
    with_prerequisites,
)

DESIGN_CATEGORIES = {
    "operation_logs": False,
    "device_info": False,
    "software_info": False,
    "mac_addresses": True,
    "location": True,
    "diagnostics": False,
    "ip_address": True,
    "cross_border_transfer": True,
}


def test_catalog_holds_the_design_categories_with_their_sensitivity() -> None:
    assert set(CATEGORY_IDS) == set(DESIGN_CATEGORIES)
    for category_id, sensitive in DESIGN_CATEGORIES.items():
        category = CATALOG[category_id]
        assert category.sensitive is sensitive, category_id
        assert category.description
        assert category.purpose
        assert category.retention_days > 0


def test_mac_addresses_requires_operation_logs() -> None:
    assert get_category("mac_addresses").requires == {"operation_logs"}
    assert with_prerequisites(["mac_addresses"]) == {"mac_addresses", "operation_logs"}
    assert dependents_of(["operation_logs"]) == {"mac_addresses"}
    assert dependents_of(["device_info"]) == frozenset()


def test_unknown_category_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown data category"):
        get_category("browsing_history")
    with pytest.raises(UsageError):
        validate_categories(["operation_logs", "nope"])
