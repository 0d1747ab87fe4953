"""Upload throughput: drain stored records to the reference receiver over TLS on loopback.

Subject: ``N`` records (default 100,000, ~190-byte bodies shaped as the operation-log
collector writes them: the speaker key first, 50 speakers) appended to a real encrypted store
under a real consent permit, then one :meth:`Uploader.drain` through the public API
(``open_uploader``): claim + decrypt, consent check, encode, frame, gzip, POST over TLS 1.3
(keep-alive, 2 batches of 2,000 in flight), acknowledge + delete. The rate is end to end, from
the first claim to the last delete; the receiver's database is counted afterwards.

Baseline, in the same run: the OpenTelemetry Python SDK (``LoggerProvider`` +
``BatchLogRecordProcessor`` + ``OTLPLogExporter`` over HTTP, default settings) emitting a burst of
20,000 log records as fast as it can, then ``shutdown()``; delivered = records the receiver
stored. ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` are unset in this process (requests would
otherwise replace the exporter's ``certificate_file`` with them: notes/performance.md).

The receiver runs in its own process (its own GIL), started with the same ``Receiver`` class as
``wking receiver run``. ``--records 1000000`` also prints the uploader's RSS every 10 % of the
drain: memory must stay flat (at most ``(concurrency + 1) * batch_size`` records are held).

    .venv/bin/python benchmarks/upload.py                      # 100,000 + the SDK's 20,000
    .venv/bin/python benchmarks/upload.py --records 1000000 --sdk 0
    .venv/bin/python benchmarks/upload.py --profile-receiver   # where the receiver spends time
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.models import Record
from wking_device.store import open_store
from wking_device.upload import TLSOptions, UploadTarget, open_uploader, parse_endpoint

RECEIVER = r"""
import asyncio, signal, sys
from pathlib import Path
from wking_device.receiver import Receiver

async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with Receiver(Path(sys.argv[1]), max_body=64 * 1024 * 1024) as rx:
        print(rx.endpoint, rx.ca_file, flush=True)
        await stop.wait()

if len(sys.argv) > 2:
    import cProfile, pstats
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(main())
    finally:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(18)
else:
    asyncio.run(main())
"""


LAST: dict[str, Any] = {}
"""Figures of the last drain / SDK bursts, for :func:`run`."""


def rss_mib() -> float:
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class ReceiverProcess:
    def __init__(self, directory: Path, *, profile: bool) -> None:
        args = [sys.executable, "-c", RECEIVER, str(directory)] + (["profile"] if profile else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        endpoint, ca_file = self.proc.stdout.readline().split()
        self.endpoint, self.ca_file, self.db = endpoint, Path(ca_file), directory / "receiver.db"

    def cpu_seconds(self) -> float:
        """The receiver process's user + system CPU time."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu(self) -> dict[str, float]:
        """CPU seconds by thread (``main``: the event loop's; ``other``: the database's)."""
        return thread_cpu(self.proc.pid)

    def count(self, prefix: str | None = None) -> int:
        conn = sqlite3.connect(self.db)
        try:
            if prefix is None:
                return int(conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])
            return int(
                conn.execute(
                    "SELECT COUNT(*) FROM records WHERE record_id LIKE ?", (prefix + "%",)
                ).fetchone()[0]
            )
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def thread_cpu(pid: int | None = None) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of a process (``/proc``), by thread.

    Threads are named ``main`` (the event loop's), by their Python name in this process
    (numbered pools summed), else ``other``.
    """
    own = pid is None
    pid = os.getpid() if pid is None else pid
    names = {t.native_id: re.sub(r"_\d+$", "", t.name) for t in threading.enumerate()}
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = task.joinpath("stat").read_text().rpartition(")")[2].split()
            tid = int(task.name)
            name = "main" if tid == pid else (names.get(tid, "other") if own else "other")
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_delta(before: dict[str, float], after: dict[str, float], n: int) -> str:
    """CPU µs per record by thread, busiest first."""
    names = sorted(after, key=lambda name: before.get(name, 0.0) - after[name])
    return ", ".join(
        f"{name} {(after[name] - before.get(name, 0.0)) / n * 1e6:.1f}"
        for name in names
        if after[name] - before.get(name, 0.0) > 0
    )


SPEAKERS = [f"spk:{hashlib.sha256(bytes([k])).hexdigest()[:32]}" for k in range(50)]
"""Speaker keys as :class:`~wking_device.bindings.SpeakerKeys` makes them (``spk:`` + 32 hex)."""


async def fill(home: Path, n: int) -> Any:
    paths = resolve_paths(home)
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    gate.grant(["operation_logs"], method="api")
    permit = gate.permit(["operation_logs"])
    store = open_store(paths, settings, max_bytes=8 * 1024 * 1024 * 1024)
    consent_id = permit.consent_ids["operation_logs"]
    started = time.perf_counter()
    for start in range(0, n, 1000):
        records = [
            Record(
                category="operation_logs",
                consent_id=consent_id,
                policy_version=permit.policy_version,
                body={
                    "speaker": SPEAKERS[i % 50],
                    "kind": "read",
                    "outcome": "ok",
                    "started_at": 1_795_000_000.0 + i / 1000,
                    "duration_s": 0.0125 + (i % 9) / 1000,
                    "attempt": 1,
                    "name": "W-KING D8",
                    "detail": {"rssi": -40 - i % 40, "battery": 80 - i % 30},
                },
            )
            for i in range(start, min(n, start + 1000))
        ]
        await store.append(records, permit)
    print(f"stored {n:,} records in {time.perf_counter() - started:.1f} s")
    return paths, gate, store


async def drain(
    home: Path, rx: ReceiverProcess, n: int, *, concurrency: int, batch: int = 2000
) -> float:
    paths, gate, store = await fill(home, n)
    samples: list[str] = []
    step = max(n // 10, 1)
    next_sample = step

    def progress(counters: Any) -> None:
        nonlocal next_sample
        if counters.sent >= next_sample:
            samples.append(f"{counters.sent:,}:{rss_mib():.0f}MiB")
            next_sample += step

    target = UploadTarget(
        endpoint=parse_endpoint(rx.endpoint),
        tls=TLSOptions(ca_file=rx.ca_file),
        batch_size=batch,
        concurrency=concurrency,
    )
    uploader = open_uploader(
        target, store=store, gate=gate, data_dir=paths.data_dir, progress=progress
    )
    rss_before = rss_mib()
    rx_cpu = rx.cpu_seconds()
    rx_threads, threads = rx.thread_cpu(), thread_cpu()
    cpu = time.process_time()
    started = time.perf_counter()
    async with uploader:
        result = await uploader.drain()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    rx_cpu = rx.cpu_seconds() - rx_cpu
    rx_threads, threads = (
        thread_delta(rx_threads, rx.thread_cpu(), n),
        thread_delta(threads, thread_cpu(), n),
    )
    left = (await store.stats()).total
    await store.aclose()
    delivered = rx.count() - rx.count("gen-")  # not the SDK's records
    rate = result.counters.sent / elapsed
    print(
        f"ours: {result.counters.sent:,} sent in {elapsed:.2f} s = {rate:,.0f} records/s end to "
        f"end; receiver stored {delivered:,}; lost {n - delivered:,}; left locally {left:,}; "
        f"{result.counters.requests} requests, {result.counters.bytes / 1e6:.1f} MB gzip"
    )
    print(
        f"ours: CPU {cpu:.2f} s in the uploader process ({cpu / n * 1e6:.1f} us/record, all "
        f"threads), {rx_cpu:.2f} s in the receiver ({rx_cpu / n * 1e6:.1f} us/record); load "
        f"average {os.getloadavg()[0]:.2f}"
    )
    print(f"ours: CPU us/record by thread: uploader {threads}; receiver {rx_threads}")
    print(f"ours: RSS before drain {rss_before:.0f} MiB; during: {' '.join(samples)}")
    LAST.update(cpu_us=cpu / n * 1e6, rx_cpu_us=rx_cpu / n * 1e6, lost=n - delivered, left=left)
    return rate if delivered == n else 0.0


def sdk_burst(rx: ReceiverProcess, n: int) -> float:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    before = rx.count("gen-")
    provider = LoggerProvider()
    exporter = OTLPLogExporter(endpoint=rx.endpoint, certificate_file=str(rx.ca_file))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger = provider.get_logger("benchmark")
    started = time.perf_counter()
    for i in range(n):
        logger.emit(
            body='{"op":"read","outcome":"ok","speaker":%d}' % (i % 50),  # noqa: UP031
            attributes={"wking.category": "operation_logs", "n": i},
        )
    provider.shutdown()
    elapsed = time.perf_counter() - started
    delivered = rx.count("gen-") - before
    rate = delivered / elapsed
    LAST.setdefault("sdk_lost", []).append(n - delivered)
    print(
        f"SDK:  {n:,} emitted, receiver stored {delivered:,} in {elapsed:.2f} s = "
        f"{rate:,.0f} records/s delivered; lost {n - delivered:,}"
    )
    return rate


def run(quick: bool = False) -> list[dict[str, Any]]:
    """For ``python -m benchmarks``: the SDK's burst runs before and after our drain (paired)."""
    n, burst = (20_000, 20_000) if quick else (100_000, 20_000)
    LAST.clear()

    async def both() -> tuple[float, float, float]:
        with tempfile.TemporaryDirectory(prefix="wking-upload-bench-") as tmp:
            root = Path(tmp)
            os.environ["WKING_HOME"] = str(root / "home")
            rx = ReceiverProcess(root / "rx", profile=False)
            try:
                before = await asyncio.to_thread(sdk_burst, rx, burst)
                ours = await drain(root / "home", rx, n, concurrency=2)
                after = await asyncio.to_thread(sdk_burst, rx, burst)
            finally:
                rx.stop()
            return ours, before, after

    home = os.environ.get("WKING_HOME")
    try:
        with contextlib.redirect_stdout(sys.stderr):
            ours, before, after = asyncio.run(both())
    finally:
        if home is None:
            os.environ.pop("WKING_HOME", None)
        else:
            os.environ["WKING_HOME"] = home
    return [
        {
            "name": "upload.drain",
            "value": ours,
            "unit": "records/s",
            "better": "higher",
            "baseline": "OpenTelemetry SDK BatchLogRecordProcessor + OTLP/HTTP, defaults, "
            "delivered",
            "baseline_values": [before, after],
            "budget": 3.0,
            "cpu_us_per_item": LAST.get("cpu_us"),
            "detail": f"ours {n:,} records over TLS, receiver CPU "
            f"{LAST.get('rx_cpu_us', 0):.1f} us/record, lost {LAST.get('lost')} (0 counts as rate "
            f"0 otherwise); the SDK lost {' and '.join(map(str, LAST.get('sdk_lost', [])))} of "
            f"{burst:,} per burst; goal >= 50,000 records/s",
        }
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sdk", type=int, default=20_000, help="SDK burst size (0: skip)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2000, help="records per request")
    parser.add_argument("--profile-receiver", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wking-upload-bench-") as tmp:
        root = Path(tmp)
        os.environ["WKING_HOME"] = str(root / "home")
        rx = ReceiverProcess(root / "rx", profile=args.profile_receiver)
        try:
            ours = await drain(
                root / "home", rx, args.records, concurrency=args.concurrency, batch=args.batch
            )
            if args.sdk:
                sdk = await asyncio.to_thread(sdk_burst, rx, args.sdk)
                if sdk:
                    print(f"ratio ours/SDK: {ours / sdk:.1f}x (goal >= 3x, ours losing nothing)")
        finally:
            rx.stop()


if __name__ == "__main__":
    asyncio.run(main())
