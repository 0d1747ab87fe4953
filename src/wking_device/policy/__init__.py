"""The data-category catalog and the versioned privacy notices, as data.

Public names: the :class:`Category` catalog (:data:`CATALOG`, :func:`get_category`, prerequisite
helpers) and the policy documents (:class:`PolicyDocument`, :class:`PolicySet`,
:func:`shipped_policies`). Nothing here records or checks consent; see
:mod:`wking_device.consent`.
"""

from __future__ import annotations

from wking_device._public import publish as _publish
from wking_device.policy._catalog import (
    CATALOG,
    CATEGORY_IDS,
    Category,
    dependents_of,
    get_category,
    validate_categories,
    with_prerequisites,
)
from wking_device.policy._documents import (
    PolicyDiff,
    PolicyDocument,
    PolicySet,
    parse_version,
    shipped_policies,
)

__all__ = [
    "CATALOG",
    "CATEGORY_IDS",
    "Category",
    "PolicyDiff",
    "PolicyDocument",
    "PolicySet",
    "dependents_of",
    "get_category",
    "parse_version",
    "shipped_policies",
    "validate_categories",
    "with_prerequisites",
]

_publish(__name__, globals(), __all__)
