r"""What reaches a terminal: the one escaper for untrusted text, the consoles, the JSON bytes.

Every string the CLI prints that it did not write itself — a speaker's name or firmware, an
exception's message, a path, a value from a file, the ledger or the store, an alias the user
typed — is untrusted (STYLE §14). Before it reaches a terminal:

- control characters (C0, DEL, C1 such as ``\x9b``), bidirectional overrides (U+202E), other
  invisible format characters and line separators are made visible as Python-style escapes
  (``\x1b``, ``\u202e``) by :func:`visible`, so no escape sequence of a speaker can retitle
  the window, clear the screen or reorder what the user reads;
- Rich markup (``[bold]``, ``[link=…]``) is never interpreted: :func:`markup` escapes text
  that is placed in a Rich markup string, and the consoles of :func:`make_console` do not
  replace ``:emoji:`` codes or highlight.

``--json`` output stays exact JSON (:func:`json_bytes`): orjson escapes C0 controls; every
other character :func:`visible` escapes (DEL, C1 controls, bidirectional and other invisible
format characters), which orjson writes raw, is written as a ``\uXXXX`` escape — the same
strings to a JSON parser, inert on a terminal.

Output to something that is not a terminal (a pipe, a file) is neither wrapped nor truncated:
a value is printed whole on one line, so ``grep`` and ``cut`` see it.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any, Final, TextIO

import orjson

from wking_device._redact import MAC_MARK, redact

if TYPE_CHECKING:
    # rich loads when something is rendered (~40 ms that `wking --help` does not need)
    from rich.console import Console
    from rich.text import Text

__all__ = [
    "PIPE_WIDTH",
    "cell",
    "for_stderr",
    "json_bytes",
    "make_console",
    "markup",
    "visible",
]

PIPE_WIDTH: Final = 1_000_000
"""Console width when the output is not a terminal: wide enough that nothing wraps."""

# Printable per str.isprintable(), or a space separator (U+00A0, U+3000: harmless)
_SPACES: Final = frozenset(
    " \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u202f\u205f\u3000"
)


_SHORT: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(value: object, *, multiline: bool = False) -> str:
    r"""The text of a value with every character a terminal could act on made visible.

    Control characters (C0, DEL, C1), format characters (bidirectional overrides and
    isolates, zero-width characters, the BOM), line and paragraph separators, surrogates and
    unassigned or private-use code points become ``\x1b``, ``\n``, ``\u202e`` or ``\U…``
    escapes.

    Args:
        value: Anything; ``str(value)`` is escaped (``None`` gives ``""``).
        multiline: Keep newlines and tabs (a traceback, a document); otherwise they are
            escaped too, so a value cannot forge a line of its own.

    Returns:
        The text, safe to write to a terminal (but not yet to a Rich markup string: see
        :func:`markup`).
    """
    text = "" if value is None else str(value)
    if text.isprintable():  # the common case, in C
        return text
    keep = "\n\t" if multiline else ""
    return "".join(
        char if char.isprintable() or char in _SPACES or char in keep else _escape_char(char)
        for char in text
    )


def markup(value: object) -> str:
    """:func:`visible` text, escaped to sit inside a Rich markup string literally.

    Use it for data in f-strings given to ``console.print`` (``f"Bound {markup(name)}."``).
    """
    from rich.markup import escape  # noqa: PLC0415

    return escape(visible(value))


# A mistyped address (one wrong character: "C0:57:4B:00:00:0G", "c0574b00000g") names the
# speaker as well as a correct one: six pairs of letters or digits with one separator, or 12
# letters and digits of which at least 10 are hex digits.
_TYPED_PAIRS: Final = re.compile(
    r"(?<![0-9A-Za-z])[0-9A-Za-z]{2}([:._-])(?:[0-9A-Za-z]{2}\1){4}[0-9A-Za-z]{2}(?![0-9A-Za-z])"
)
_TYPED_BARE: Final = re.compile(r"(?<![0-9A-Za-z])[0-9A-Za-z]{12}(?![0-9A-Za-z])")
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def _typed_bare(match: re.Match[str]) -> str:
    token = match.group(0)
    return MAC_MARK if sum(char in _HEX_DIGITS for char in token) >= 10 else token


def for_stderr(value: object, *, multiline: bool = False) -> str:
    """Text for standard error: MAC addresses and key material redacted, then :func:`visible`.

    Standard error is the journal under systemd (DESIGN §9): every line the CLI writes there
    (errors, usage errors, tracebacks, progress) goes through this, so an address a user typed
    — even mistyped — is ``[MAC]`` there.

    Args:
        value: The text (``str(value)``).
        multiline: Keep newlines and tabs (a traceback).
    """
    text = redact("" if value is None else str(value))
    text = _TYPED_BARE.sub(_typed_bare, _TYPED_PAIRS.sub(MAC_MARK, text))
    return visible(text, multiline=multiline)


def cell(value: object) -> Text:
    """A table cell or line of :func:`visible` text that Rich never parses as markup."""
    from rich.text import Text  # noqa: PLC0415

    return Text(visible(value))


# orjson escapes C0 controls but writes every other character raw: DEL, C1 controls, the
# bidirectional and other invisible format characters (zero-width, tag characters) among them.
# Outside strings it writes only printable ASCII, spaces and newlines, so escaping a character
# as a JSON ``\uXXXX`` (a surrogate pair beyond U+FFFF) changes nothing a JSON parser reads.
# What is escaped is what :func:`visible` escapes in text output.
_JSON_UNSAFE: Final = re.compile(rb"[^\x20-\x7e\n]+")


def _json_char(char: str) -> str:
    if char.isprintable() or char in _SPACES:
        return char
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _json_escape(match: re.Match[bytes]) -> bytes:
    return "".join(_json_char(char) for char in match.group(0).decode()).encode()


def json_bytes(data: Any) -> bytes:
    """``data`` as indented JSON, UTF-8, ending with a newline; inert on a terminal.

    Args:
        data: A JSON-serialisable value.
    """
    text = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    return _JSON_UNSAFE.sub(_json_escape, text) + b"\n"


def json_line(data: Any) -> str:
    """``data`` as one line of compact JSON, inert on a terminal (a JSON log line)."""
    text = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=str)
    return _JSON_UNSAFE.sub(_json_escape, text).decode("utf-8")


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def make_console(*, stderr: bool = False) -> Console:
    """A Rich console for standard output (or error) that interprets nothing from data.

    No emoji codes, no highlighting. On a terminal it wraps at the terminal's width; otherwise
    (a pipe, a file) it never wraps, folds or truncates: tables take their natural width.

    Args:
        stderr: Write to standard error (questions, progress) instead of standard output.
    """
    from rich.console import Console  # noqa: PLC0415

    stream = sys.stderr if stderr else sys.stdout
    if _is_terminal(stream):
        return Console(stderr=stderr, highlight=False, emoji=False)
    return Console(stderr=stderr, highlight=False, emoji=False, width=PIPE_WIDTH, soft_wrap=True)
