"""The one rendering of a collector URL for people: every query value replaced by a mark.

A collector endpoint may carry a secret in its query string
(``https://collector.example/v1/logs?api_key=…``). This module owns :func:`mask_url`, which
every message, log line and display of an endpoint goes through; the code that sends keeps the
real URL. It changes nothing but the query: the scheme, host, port, path and fragment are kept
as they are (``parse_endpoint`` refuses credentials and fragments before a URL is used).

It is a plain string function with no imports of the upload stack, so the CLI can use it
without importing aiohttp. It does not check or parse a URL beyond finding its query.
"""

from __future__ import annotations

import logging
import re

__all__ = ["QUERY_MARK", "mask_url"]

_LOGGER = logging.getLogger(__name__)

#: What replaces each query parameter's value (and a parameter without ``=``, whole).
QUERY_MARK = "[…]"

# "&" and ";" both separate parameters (HTML 4's ";" is still met); the separators are kept
_SEPARATORS = re.compile(r"([&;])")


def mask_url(url: str) -> str:
    """Return ``url`` for messages, logs and displays: each query value replaced by a mark.

    ``https://c.example/v1/logs?api_key=s3cr3t&tenant=a`` becomes
    ``https://c.example/v1/logs?api_key=[…]&tenant=[…]``: the parameter names stay, each
    value (percent-encoded or not) becomes :data:`QUERY_MARK`; a parameter without ``=`` is
    masked whole; an empty value and an empty parameter stay empty (they hide nothing). Both
    ``&`` and ``;`` separate parameters. Everything outside the query (between ``?`` and ``#``)
    is returned unchanged; a URL without ``?`` is returned as it is.

    Args:
        url: A URL, checked or not (the text of a refused one too).

    Returns:
        The URL with its query values masked.
    """
    base, question, rest = url.partition("?")
    if not question:
        return url
    query, hash_mark, fragment = rest.partition("#")
    return f"{base}?{_mask_query(query)}{hash_mark}{fragment}"


def _mask_query(query: str) -> str:
    parts = _SEPARATORS.split(query)
    for index in range(0, len(parts), 2):  # the even items are parameters, the odd separators
        parameter = parts[index]
        name, equals, value = parameter.partition("=")
        if not equals:
            parts[index] = QUERY_MARK if parameter else ""
        elif value:
            parts[index] = f"{name}={QUERY_MARK}"
    return "".join(parts)
