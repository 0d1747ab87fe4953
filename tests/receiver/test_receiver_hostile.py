"""The reference receiver against hostile or broken clients and broken files of its own.

Real TLS on 127.0.0.1 with the receiver's private CA, raw sockets where a client must misbehave
below HTTP (stall mid-body, disconnect mid-body, never send), ``wking receiver run`` in a real
process where its log output and its stop matter.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from wking_device.cli import cli
from wking_device.errors import ConfigError
from wking_device.receiver import Receiver
from wking_device.upload import LogsFramer, encode_log_record, gzip_body

# a hang guard, not a measurement: each wait ends long before it unless the receiver hangs
_GUARD = 30.0


def _body(n: int = 2) -> bytes:
    records = [
        encode_log_record(
            record_id=f"h{i}",
            category="operation_logs",
            consent_id="c1",
            policy_version="1.1",
            body=f'{{"i":{i}}}',
            time_unix_nano=i + 1,
        )
        for i in range(n)
    ]
    return LogsFramer("inst-1").frame(records)


@pytest.fixture(name="rx")
async def fixture_rx(tmp_path: Path) -> AsyncIterator[Receiver]:
    async with Receiver(tmp_path / "rx", max_body=64 * 1024, request_timeout=0.5) as rx:
        yield rx


async def _connect(ca_file: Path, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = ssl.create_default_context(cafile=ca_file)
    return await asyncio.open_connection("127.0.0.1", port, ssl=context)


def _head(length: int, *, gz: bool = False, expect: bool = False) -> bytes:
    lines = [
        "POST /v1/logs HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/x-protobuf",
        f"Content-Length: {length}",
    ]
    if gz:
        lines.append("Content-Encoding: gzip")
    if expect:
        lines.append("Expect: 100-continue")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """Everything the receiver sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), _GUARD)


async def _post(rx: Receiver, data: bytes, *, gz: bool) -> bytes:
    reader, writer = await _connect(rx.ca_file, rx.port)
    writer.write(_head(len(data), gz=gz).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    writer.write(data)
    await writer.drain()
    try:
        return await _answer(reader)
    finally:
        writer.close()


async def test_thousands_of_gzip_members_are_refused(rx: Receiver) -> None:
    # each member's leftover input was copied whole after it: 8 MiB of 20-byte empty members
    # (419,430 of them) froze the event loop for tens of seconds; a client sends one member
    answer = await _post(rx, gzip.compress(b"", mtime=0) * 1000, gz=True)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"gzip members" in answer
    # a few members stay legal (RFC 1952): a request split in two members is stored whole
    body = _body(2)
    two = gzip.compress(body[:7], mtime=0) + gzip.compress(body[7:], mtime=0)
    assert (await _post(rx, two, gz=True)).startswith(b"HTTP/1.1 200 ")
    assert [row["record_id"] for row in rx.export()] == ["h0", "h1"]


async def test_a_request_of_more_records_than_the_cap_is_413_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    # an empty log record is two bytes of protobuf: 2 MiB of them were a million rows, 5 s of
    # the event loop and 400 MB; the count is checked before any per-record work
    request = ExportLogsServiceRequest()
    logs = request.resource_logs.add().scope_logs.add().log_records
    for _ in range(1001):
        logs.add()
    async with Receiver(tmp_path / "rx", max_records=1000) as rx:
        answer = await _post(rx, request.SerializeToString(), gz=False)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"1001 log records in one request (at most 1000)" in answer
        assert rx.export() == []
        del logs[1000]  # at the cap: stored
        answer = await _post(rx, request.SerializeToString(), gz=False)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        assert len(rx.export()) == 1000


@pytest.mark.parametrize(
    "value",
    [
        AnyValue(string_value="x" * 201),
        AnyValue(string_value=""),
        AnyValue(int_value=7),
    ],
    ids=["too-long", "empty", "int"],
)
async def test_a_record_id_that_cannot_be_kept_refuses_the_request(
    rx: Receiver, value: AnyValue
) -> None:
    # it was replaced by a made-up id: each re-send of the same record was stored once more
    request = ExportLogsServiceRequest()
    log = request.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=1)
    log.body.string_value = "{}"
    log.attributes.append(KeyValue(key="wking.record_id", value=value))
    data = request.SerializeToString()
    for _ in range(2):  # sent, then re-sent after a lost answer
        answer = await _post(rx, data, gz=False)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert b"wking.record_id" in answer
    assert rx.export() == []


async def test_a_client_stalled_mid_body_gets_408_and_nothing_is_stored(rx: Receiver) -> None:
    body = gzip_body(_body(2))
    reader, writer = await _connect(rx.ca_file, rx.port)
    writer.write(_head(len(body), gz=True) + body[: len(body) // 2])
    await writer.drain()
    answer = await _answer(reader)  # the receiver answers and closes; it used to wait for ever
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert rx.export() == []
    assert rx.stats.refused == 1
    # the rest of the receiver is unaffected
    assert (await _post(rx, body, gz=True)).startswith(b"HTTP/1.1 200 ")
    assert len(rx.export()) == 2


async def test_a_connection_that_never_sends_is_closed(rx: Receiver) -> None:
    reader, writer = await _connect(rx.ca_file, rx.port)
    assert await _answer(reader) == b""  # closed by the receiver (aiohttp's default: an hour)
    writer.close()
    assert rx.stats.requests == 0


def _start_cli_receiver(
    tmp_path: Path, *, verbose: bool = False
) -> tuple[subprocess.Popen[str], Path, int]:
    data = tmp_path / "rx"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wking_device",
            *(["-v"] if verbose else []),
            "receiver",
            "run",
            "--port",
            "0",
            "--data",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "WKING_HOME": str(tmp_path / "home")},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "listening on https://127.0.0.1:PORT/v1/logs"
    assert line.startswith("listening on https://127.0.0.1:"), line
    port = int(line.rsplit(":", 1)[1].split("/", 1)[0])
    return proc, data / "ca.pem", port


def test_clients_leaving_or_stalling_mid_body_neither_log_tracebacks_nor_hold_the_stop(
    tmp_path: Path,
) -> None:
    proc, ca_file, port = _start_cli_receiver(tmp_path)
    try:

        async def misbehave() -> asyncio.StreamWriter:
            # both are inside the handler once the receiver says "100 Continue"
            gone_reader, gone = await _connect(ca_file, port)
            gone.write(_head(1000, expect=True))
            await gone.drain()
            assert (await gone_reader.readline()).startswith(b"HTTP/1.1 100 ")
            gone.write(b"x" * 10)
            await gone.drain()
            gone.transport.abort()  # disconnects mid-body
            stalled_reader, stalled = await _connect(ca_file, port)
            stalled.write(_head(1000, expect=True))
            await stalled.drain()
            assert (await stalled_reader.readline()).startswith(b"HTTP/1.1 100 ")
            stalled.write(b"x" * 10)
            await stalled.drain()
            return stalled  # stays connected, sends nothing more

        async def scenario() -> None:
            stalled = await misbehave()
            proc.send_signal(signal.SIGTERM)
            # aiohttp waited 60 s for the stalled request's handler before it cancelled it
            _, err = await asyncio.to_thread(proc.communicate, timeout=_GUARD)
            stalled.transport.abort()
            assert proc.returncode == 0, err
            assert "Traceback" not in err, err
            assert "Error handling request" not in err, err

        asyncio.run(scenario())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("ca.pem", b"garbage\n"),
        ("ca.key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        ("server.pem", b"\x00\x01 not pem"),
        ("receiver.db", b"not a database at all, " * 20),
    ],
)
def test_a_damaged_receiver_file_is_one_line_naming_it(
    tmp_path: Path, name: str, content: bytes
) -> None:
    data = tmp_path / "rx"

    async def first_start() -> None:
        async with Receiver(data):
            pass

    asyncio.run(first_start())
    (data / name).write_bytes(content)
    args = ["--home", str(tmp_path / "home"), "receiver", "run", "--port", "0", "--data", str(data)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert str(data / name) in result.stderr
    assert "a bug in wking" not in result.stderr
    assert (data / name).read_bytes() == content  # never replaced without a word
    if name == "receiver.db":
        exported = CliRunner().invoke(cli, ["receiver", "export", "--data", str(data)])
        assert exported.exit_code == 2, exported.output
        assert str(data / name) in exported.stderr
        assert "a bug in wking" not in exported.stderr


async def test_received_records_are_for_the_owner_only(tmp_path: Path) -> None:
    # --data of a directory that exists already (0755): it does not shield the database
    data = tmp_path / "rx"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    async with Receiver(data) as rx:
        assert (await _post(rx, gzip_body(_body(1)), gz=True)).startswith(b"HTTP/1.1 200 ")
        files = sorted(path.name for path in data.glob("receiver.db*"))
        assert files == ["receiver.db", "receiver.db-shm", "receiver.db-wal"]
        modes = {name: stat.S_IMODE((data / name).stat().st_mode) for name in files}
    assert modes == dict.fromkeys(files, 0o600)


@pytest.mark.parametrize("name", ["ca.key", "server.key"])
async def test_a_private_key_group_or_others_can_read_is_refused(tmp_path: Path, name: str) -> None:
    data = tmp_path / "rx"
    async with Receiver(data):
        pass
    (data / name).chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        async with Receiver(data):
            pass
    assert str(data / name) in str(info.value)
    assert stat.S_IMODE((data / name).stat().st_mode) == 0o644  # left as it is, not used


async def test_a_certificate_of_a_former_ca_is_issued_again(tmp_path: Path) -> None:
    # the CA is made again (its key was lost) and the process killed before the new server
    # certificate was written: the old one, of the former CA, was reused start after start
    data, other = tmp_path / "rx", tmp_path / "other"
    for directory in (data, other):
        async with Receiver(directory):
            pass
    for name in ("ca.pem", "ca.key"):
        (data / name).write_bytes((other / name).read_bytes())
    async with Receiver(data) as rx:
        assert (await _post(rx, gzip_body(_body(1)), gz=True)).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_malformed_http_is_no_traceback_unless_verbose(tmp_path: Path, verbose: bool) -> None:
    proc, ca_file, port = _start_cli_receiver(tmp_path, verbose=verbose)
    try:

        async def send(head: bytes) -> bytes:
            reader, writer = await _connect(ca_file, port)
            writer.write(head)
            await writer.drain()
            try:
                return await _answer(reader)
            finally:
                writer.close()

        async def scenario() -> None:
            start = b"POST /v1/logs HTTP/1.1\r\nHost: x\r\n"
            for head in (
                start + b"X-Long: " + b"a" * 10_000 + b"\r\n\r\n",
                start + b"Content-Length: -5\r\n\r\n",
                start + b"Transfer-Encoding: chunked\r\n\r\nzz\x1b[31m\r\n",
            ):
                assert (await send(head)).startswith(b"HTTP/1.0 400 ")

        asyncio.run(scenario())
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert "\x1b" not in err  # the client's bytes never reach the terminal as they are
    if verbose:
        assert err.count("Traceback") == 3, err
    else:
        assert "Traceback" not in err, err
        assert "Error handling request" not in err, err
