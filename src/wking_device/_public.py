"""Re-home the public names of a package whose classes live in private modules.

This module owns one helper, :func:`publish`, which each public package calls on its
``__all__``: a class or function defined in a private module (``wking_device.protocol._frames``)
then reports the package a user imports it from (``wking_device.protocol``) in ``repr``,
``help()``, pickles and API docs, as httpx does. It does not rename loggers (modules keep
``logging.getLogger(__name__)``) and leaves names of public modules as they are.

``typing.get_type_hints`` evaluates a class's string annotations in the module its
``__module__`` names: a re-homed class's own string annotations become ``ForwardRef`` objects
bound to the module they were written in, so they keep resolving there, lazily (nothing is
evaluated or imported when a package loads).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping


def is_private(module: str) -> bool:
    """Whether a dotted module path has a component starting with ``_``.

    Args:
        module: A dotted module path.

    Returns:
        True for ``wking_device.ble._speaker``, False for ``wking_device.ble``.
    """
    return any(part.startswith("_") for part in module.split("."))


def claim(value: object, module: str) -> None:
    """Make ``module`` the ``__module__`` of ``value`` if it is still a private one of ours.

    The first public package to claim a name keeps it: a subpackage (imported first, by the
    root package's lazy loader too) wins over the root that re-exports it.

    Args:
        value: An exported object; only classes and functions are re-homed.
        module: The public module that exports it (it must hold it under its ``__qualname__``).
    """
    if not isinstance(value, type | types.FunctionType):
        return
    current = value.__module__
    if not (current.startswith("wking_device") and is_private(current)):
        return
    if isinstance(value, type):
        annotations = vars(value).get("__annotations__")  # the class's own dict, edited in place
        if isinstance(annotations, dict):
            for key, hint in annotations.items():
                if isinstance(hint, str):
                    annotations[key] = typing.ForwardRef(
                        hint, is_argument=False, module=current, is_class=True
                    )
    value.__module__ = module


def publish(module: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Claim every class and function of ``names`` already bound in ``namespace``.

    Args:
        module: The public package's ``__name__``.
        namespace: Its ``globals()``; names not bound yet (lazy ones) are claimed on load.
        names: Its ``__all__``.
    """
    for name in names:
        if name in namespace:
            claim(namespace[name], module)
