"""Shared by the examples: run against the simulator by default, or a real adapter (--real).

Also what every example does on the way out: one ``error: …`` line and the error's exit code
instead of a traceback (``-v`` for the traceback), and logging set up so that warnings of
``wking_device`` reach the user.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import traceback
from typing import TYPE_CHECKING

from wking_device.errors import WkingError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from wking_device.ble import BleBackend, DiscoveredSpeaker


def shown(text: object) -> str:
    """Return ``text`` safe for a terminal: characters that are not printable are escaped.

    Speakers choose their own names and Device Information strings; one could carry an escape
    sequence that moves the cursor, rewrites the screen or reverses the text direction.
    ``str.isprintable`` is false for every such character (control and format characters).
    """
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(text))


def _speaker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= count <= 1000:
        raise argparse.ArgumentTypeError(f"{count} is not from 1 to 1000")
    return count


def parse_args(description: str, *, address: bool = False, speakers: int = 3) -> argparse.Namespace:
    """Parse the examples' common options (and set up logging, see :func:`setup_logging`).

    Args:
        description: The example's one-line description.
        address: Take an optional speaker address.
        speakers: How many simulated speakers by default.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--real", action="store_true", help="use the Bluetooth adapter")
    parser.add_argument(
        "--speakers",
        type=_speaker_count,
        default=speakers,
        metavar="N",
        help=f"simulated speakers, 1-1000 (default {speakers})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="tracebacks on errors")
    if address:
        parser.add_argument("address", nargs="?", help="speaker address (default: first found)")
    args = parser.parse_args()
    setup_logging(verbose=args.verbose)
    return args


def setup_logging(*, verbose: bool = False) -> None:
    """Show warnings (and with ``verbose``, debug logs) of ``wking_device`` on stderr.

    bumble's own warnings about the simulated link are not silenced here: the simulator sends
    the ones that are part of how a simulated link ends to its debug log, so a warning that
    still shows is worth reading.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        logging.getLogger("wking_device").setLevel(logging.DEBUG)


@contextlib.contextmanager
def exit_on_error() -> Iterator[None]:
    """Turn a library error into one ``error: …`` line and its exit code; Ctrl-C exits 130."""
    try:
        yield
    except WkingError as exc:
        if {"-v", "--verbose"} & set(sys.argv[1:]):
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


@contextlib.asynccontextmanager
async def backend_for(args: argparse.Namespace) -> AsyncIterator[BleBackend | None]:
    """A simulated world's backend, or ``None`` (bleak's platform default) with --real."""
    if args.real:
        yield None
        return
    from wking_device.sim import SimWorld

    async with SimWorld.fleet(args.speakers) as world:
        yield world.backend


async def first_speaker(backend: BleBackend | None) -> DiscoveredSpeaker:
    """The first W-KING speaker that advertises; exits with a message when none does."""
    from wking_device.ble import discover

    found = await discover(3.0, backend=backend, count=1)
    if not found:
        raise SystemExit("error: no W-KING speaker found; is one switched on and nearby?")
    return found[0]
