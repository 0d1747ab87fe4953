"""Log redaction: MAC addresses, key material and tokens never reach log output.

This module owns the patterns and the :class:`logging.Filter` that rewrite a log record before
any handler formats it: the message with its arguments (``str(exception)`` included), the
formatted traceback, the stack, and string-valued extras. :func:`install_redaction` puts it in two
places: a log-record factory, so every record of the ``wking_device`` loggers is redacted when it
is created, at every level (``import wking_device`` installs this for the package's own records);
and the handlers of the root and package loggers, so that in our own processes (the CLI, with
``everything=True``) records of other libraries (bleak and bumble log addresses at DEBUG) are
redacted before output too. It does not configure levels or handlers.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "MAC_MARK",
    "MAC_RE",
    "RedactingFilter",
    "install_redaction",
    "mac_hint",
    "redact",
    "redact_macs",
    "redact_record",
]

MAC_MARK: Final = "[MAC]"
KEY_MARK: Final = "[KEY]"
TOKEN_MARK: Final = "[TOKEN]"  # noqa: S105 - the placeholder, not a secret

_HEX = "[0-9A-Fa-f]"
# 6 pairs with one consistent separator (":", "-", "." or "_" as in BlueZ object paths), wherever
# they stand: glued to other text ("SNC0:57:…", "AC0-57-…") they still name a device; or 3 dotted
# quads, or 12 bare hex digits (not the last group of a UUID: "hhhh-" before them), never part of
# a longer run of hex digits (a SHA digest, a record id) but found glued to other letters, as
# speakers and vendors write serial numbers: "SNC0574B000001", "0xC0574B000001"
_MAC_SOURCE: Final = (
    rf"{_HEX}{{2}}([:._-])(?:{_HEX}{{2}}\1){{4}}{_HEX}{{2}}"
    rf"|(?<![0-9A-Fa-f])(?:{_HEX}{{4}}\.{_HEX}{{4}}\.{_HEX}{{4}}"
    rf"|(?<!{_HEX}{{4}}-){_HEX}{{12}})(?![0-9A-Fa-f])"
)
MAC_RE: Final = re.compile(_MAC_SOURCE)
"""A MAC address in any common notation: the one definition of "MAC-shaped" that the log
filter, the collectors and the record store share."""


def _shape_table() -> bytes:
    table = bytearray(b" " * 256)
    for byte in b"0123456789abcdefABCDEF":
        table[byte] = ord("h")
    for byte in b"ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ":
        table[byte] = ord("a")
    for byte in b":-_":
        table[byte] = ord(":")  # one separator: a superset of the consistent ones
    table[ord(".")] = ord(".")
    table[ord("\\")] = ord("\\")
    return bytes(table)


_SHAPE: Final = _shape_table()
_BARE: Final = b"h" * 12
_PAIRS: Final = (b"hh:hh:hh:hh:hh:hh", b"hh.hh.hh.hh.hh.hh")
_FORMS: Final = (b"hhhh.hhhh.hhhh", _BARE)
_UNDOTTED: Final = (_BARE,)
_WORD: Final = frozenset(b"h")  # only more hex digits make a longer run: letters do not


def _past_run(shape: bytes, at: int) -> int:
    """The index after the run of hex digits (``h``) starting at ``at``."""
    return len(shape) - len(shape[at:].lstrip(b"h"))


def mac_hint(data: bytes) -> bool:
    r"""Tell, fast, whether a JSON text may hold a MAC-shaped string (:data:`MAC_RE`).

    Never ``False`` when a string in the JSON text has a :data:`MAC_RE` match; ``True`` also for
    some texts without one (a number of exactly 12 digits, any JSON escape: ``\u001b`` or
    ``\b`` could glue hex digits onto a MAC, so a backslash always says "look closer"). About
    2 µs for a 300-byte record, where the regular expression takes about 20 µs: the text is mapped
    to its shape (hex digit, other letter or digit, separator, other) and searched with
    ``bytes.find``.

    Args:
        data: UTF-8 JSON text.

    Returns:
        Whether the exact check (:data:`MAC_RE` on each string) is needed.
    """
    shape = data.translate(_SHAPE)
    if b"\\" in shape:
        return True
    # six separated pairs are a MAC wherever they stand; a short necessary part is looked for
    # first (most records have none), the full form only when it is there
    if b"hh:hh" in shape and _PAIRS[0] in shape:
        return True
    dotted = b"hh.hh" in shape
    if dotted and _PAIRS[1] in shape:
        return True
    size = len(shape)
    for form in _FORMS if dotted else _UNDOTTED:  # the dotted quads hold "hh.hh" too
        start = shape.find(form)
        while start >= 0:
            end = start + len(form)
            if start and shape[start - 1] in _WORD:
                # inside a word: go past this run of hex digits
                start = shape.find(form, _past_run(shape, start))
                continue
            if end < size and shape[end] in _WORD:
                start = shape.find(form, _past_run(shape, end))
                continue
            if (
                form is _BARE
                and data[start - 1 : start] == b"-"
                and shape[start - 5 : start] == b"hhhh:"
            ):
                start = shape.find(form, end)  # the last group of a UUID
                continue
            return True
    return False


# key-sized hex (>= 40 digits: 20 bytes; record ids are 32 digits and stay readable)
_HEX_KEY_RE: Final = re.compile(rf"(?<![0-9A-Za-z]){_HEX}{{40,}}(?![0-9A-Za-z])")
# base64 / base64url of >= 30 bytes with mixed case and digits (not paths: few slashes)
_B64_KEY_RE: Final = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{40,}={0,2}")
# HTTP credentials (RFC 9110 §11): "Bearer <token68>" anywhere; "Basic <base64>" after an
# Authorization header name only ("basic" is an ordinary word too)
_AUTH_RE: Final = re.compile(
    r"(?i)(\bbearer\s+|authorization['\"]?\s*[:=]\s*['\"]?basic\s+)[A-Za-z0-9._~+/=-]+"
)
# repr() of bytes of 16 characters or more
_BYTES_RE: Final = re.compile(r"""b'(?:[^'\\]|\\.){16,}'|b"(?:[^"\\]|\\.){16,}\"""")

_STANDARD_ATTRS: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


def _b64_key(match: re.Match[str]) -> str:
    token = match.group(0)
    if (
        token.count("/") <= 3
        and any(c.isdigit() for c in token)
        and any(c.isupper() for c in token)
        and any(c.islower() for c in token)
    ):
        return KEY_MARK
    return token


def redact(text: str) -> str:
    """Replace MAC addresses, key material and HTTP credentials in a text.

    Args:
        text: Any text (a log message, a traceback).

    Returns:
        The text with MAC addresses as ``[MAC]``, keys as ``[KEY]`` and ``Bearer``/``Basic``
        credentials as ``Bearer [TOKEN]``.
    """
    text = _AUTH_RE.sub(rf"\1{TOKEN_MARK}", text)
    text = _BYTES_RE.sub(KEY_MARK, text)
    text = _HEX_KEY_RE.sub(KEY_MARK, text)
    text = _B64_KEY_RE.sub(_b64_key, text)
    return _sub_macs(text)


def _sub_macs(text: str) -> str:
    """``text`` with every MAC-shaped substring as ``[MAC]``, until none is left.

    One pass is not always enough: a MAC glued to the end of another
    (``AA:BB:CC:DD:EE:FFC0574B000001``) is preceded by a hex digit while the first is there,
    and shows only once it is replaced (``[MAC]C0574B000001``). Each pass that changes
    something makes the text shorter, so this ends; text without a MAC takes one pass.
    """
    while True:
        scrubbed = MAC_RE.sub(MAC_MARK, text)
        if scrubbed == text:
            return scrubbed
        text = scrubbed


def redact_macs(value: Any, *, keep: frozenset[str] = frozenset()) -> Any:
    """Replace MAC-shaped text in a JSON value: strings, dict keys, nested lists and dicts.

    Args:
        value: A JSON-like value (a record body).
        keep: Names of top-level dict fields left as they are (the MAC fields of a record sealed
            under the ``mac_addresses`` key).

    Returns:
        A copy with every MAC-shaped substring as ``[MAC]`` (other values unchanged).
    """
    if isinstance(value, str):
        return _sub_macs(value)
    if isinstance(value, dict):
        return {
            (_sub_macs(k) if isinstance(k, str) else k): (v if k in keep else redact_macs(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_macs(item) for item in value]
    return value


def redact_record(record: logging.LogRecord) -> None:
    """Redact a log record in place (idempotent).

    String extras (``extra={...}``) are redacted on every call: they are attached after the
    record factory ran, so the handler filter is what catches them.

    The message is formatted with its arguments first (so ``str(exception)`` arguments are
    covered), then the arguments are dropped; a traceback is formatted and redacted into
    ``exc_text`` and ``exc_info`` cleared, so no handler can render the raw exception.
    """
    # extras are set after the record factory ran: always look at them (redact is idempotent)
    for name, value in list(record.__dict__.items()):
        if name not in _STANDARD_ATTRS and isinstance(value, str):
            setattr(record, name, redact(value))
    if getattr(record, "_wking_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string must not leak the raw arguments
        message = f"{record.msg!s} (unformattable log arguments dropped)"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._wking_redacted = True


class RedactingFilter(logging.Filter):
    """A filter that redacts every record it sees and lets it through."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record; always keep it."""
        redact_record(record)
        return True


_INSTALL_LOCK = threading.Lock()
_FILTER = RedactingFilter()


def install_redaction(*, everything: bool = False) -> Callable[[], None]:
    """Redact MAC addresses and key material from log output, at every level.

    Safe to call more than once. Call it after the logging handlers are configured (the CLI
    calls it right after ``logging.basicConfig``); handlers added later still get records of
    ``wking_device`` redacted (by the record factory), but not other libraries' records.

    Args:
        everything: Redact records of every logger at creation, not only ``wking_device``'s
            (for processes that are ours: the CLI and the agent).

    Returns:
        A function that removes what this call installed (for tests).
    """
    with _INSTALL_LOCK:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if (
                everything
                or record.name == "wking_device"
                or record.name.startswith("wking_device.")
            ):
                redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        handlers = [
            *logging.getLogger().handlers,
            *logging.getLogger("wking_device").handlers,
        ]
        added = [handler for handler in handlers if _FILTER not in handler.filters]
        for handler in added:
            handler.addFilter(_FILTER)

    def uninstall() -> None:
        with _INSTALL_LOCK:
            if logging.getLogRecordFactory() is factory:
                logging.setLogRecordFactory(previous)
            for handler in added:
                handler.removeFilter(_FILTER)

    return uninstall
