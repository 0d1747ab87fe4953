"""The ``wking`` command: the only place that prints or calls :func:`asyncio.run`.

This package owns argument parsing, output (tables with rich, ``--json`` with orjson) and the
mapping of errors to exit codes. It does no Bluetooth, consent or storage work of its own: each
command module (``_ble``, ``_consent``, ``_data``, ``_agent``) calls the library and renders the
result.

Exit codes: 0 ok, 2 usage, 3 consent required, 4 device error, 5 upload/TLS error, 6 storage/key
error, 7 integrity error (see :mod:`wking_device.errors`).
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading

import click

from wking_device.cli import _signals
from wking_device.cli._app import cli
from wking_device.cli._term import for_stderr

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> None:
    """Run the ``wking`` command and exit with its exit code.

    This ends the process: from here to its exit, SIGINT and SIGTERM are recorded rather than
    acted on, except while a command runs (each gives them its documented effect).

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).
    """
    _tolerate_unencodable_text()
    try:
        # Ctrl-C and SIGTERM are recorded until the command takes over, and again once it is
        # done: the process is ending with the command's own exit code (cli/_signals.py)
        _signals.defer()
        _signals.keep_interrupts()
        code = cli.main(args=argv, prog_name="wking", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        code = 1
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `wking` alone (click >= 8.2): the help
            exc.show()
        else:
            # one line, like every other failure, instead of click's usage block; redacted
            # (stderr is the journal under systemd) and escaped, as it quotes what was typed
            command = exc.ctx.command_path if exc.ctx is not None else "wking"
            message = for_stderr(exc.format_message())
            click.echo(f"error: {message} (see '{command} --help')", err=True)
        code = exc.exit_code
    except click.ClickException as exc:
        click.echo(f"error: {for_stderr(exc.format_message())}", err=True)
        code = exc.exit_code
    _finish()
    sys.exit(code if isinstance(code, int) else 0)


def _finish() -> None:
    """The command is done: its output goes out now, and no late signal changes the exit code.

    Output still buffered would otherwise be written while the interpreter shuts down, after
    Python has given SIGINT and SIGTERM back their default action: a Ctrl-C in that last moment
    killed the process (exit -2) with its result unwritten. Blocked, a signal that comes now
    stays pending until the process is gone.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader left (`wking scan | head -1`): nothing to write to
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # closed or replaced by a caller: nothing to flush
            pass
    if threading.current_thread() is threading.main_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, _signals.SIGNALS)


def _tolerate_unencodable_text() -> None:
    """Escape, rather than crash on, text the terminal's encoding cannot show.

    Speaker names and paths can hold any character; under an ASCII or Latin-1 locale printing
    them would raise ``UnicodeEncodeError``. (``--json`` output is written as UTF-8 bytes.)
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
