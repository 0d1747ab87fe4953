"""Ingest benchmark: 100 concurrent producers appending 300-byte records with durable acks.

Runs the public async API (``open_store`` + ``RecordStore.append`` under a real consent permit)
in a temporary home, then a plaintext SQLite WAL (synchronous=FULL) batch insert of the same rows
as the baseline, and prints records/s, p50/p99 append latency, the ratio to the baseline, and
RSS over the run (to show memory stays flat).

    .venv/bin/python benchmarks/ingest.py              # 200,000 records
    .venv/bin/python benchmarks/ingest.py --quick      # 20,000 records
    .venv/bin/python benchmarks/ingest.py --records 1000000   # the memory check

    .venv/bin/python benchmarks/ingest.py --scaling    # 1, 10, 100, 1,000 producers (a table)

The scaling table's producers are closed loop (each sends its next record when the last one is
acknowledged, so by Little's law mean latency = producers / throughput); its last rows are open
loop: 1,000 producers each sending 10, then 20, records/s on a fixed schedule, latency counted from
the scheduled time.

Goals on 2 cores: >= 40,000 records/s and ratio >= 0.5 with 100 producers, p99 <= 25 ms with
1,000 producers, >= 10,000 records/s with 10. CPU µs per record is reported for the event loop's
thread and the store's writer thread apart (the writer's from /proc), with rows per group commit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import sqlite3
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from wking_device.collect import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.models import Record
from wking_device.store import open_store
from wking_device.store._batches import _settle_groups

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

CATEGORY = "operation_logs"
_BUCKETS = 200_000
_WRITER = "wking-store-writer"


def rss_mib() -> float:
    with open("/proc/self/statm") as f:  # noqa: PTH123
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _stat_cpu(path: str) -> float:
    """User + system CPU seconds in a ``/proc`` ``stat`` file (0.0 when it is gone)."""
    try:
        with open(path) as f:  # noqa: PTH123
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(name: str) -> float:
    """CPU seconds used so far by the live thread called ``name`` (0.0 when there is none)."""
    for thread in threading.enumerate():
        if thread.name == name and thread.native_id is not None:
            return _stat_cpu(f"/proc/self/task/{thread.native_id}/stat")
    return 0.0


def body(n: int) -> dict:
    # ~300 bytes of JSON, the size of one operation event
    return {
        "kind": "connect",
        "outcome": "ok",
        "name": "W-KING D8",
        "model": "D8",
        "started_at": 1_795_000_000.0 + n,
        "duration_s": 0.8123,
        "attempt": 1,
        "error": None,
        "error_type": None,
        "detail": {"rssi": -61, "mtu": 247, "count": n, "note": "x" * 70},
    }


def process_cpu(pid: int | None) -> float:
    """CPU seconds used so far by process ``pid`` (0.0 when there is none)."""
    return 0.0 if pid is None else _stat_cpu(f"/proc/{pid}/stat")


class GcWatch:
    """The garbage collector's work while it is installed: collections, full ones, pauses.

    A closed-loop producer is resumed only after its record is acknowledged, so a collection
    that stops the event loop for a few milliseconds lands in the latency of every record then
    in flight (1,000 at a time with 1,000 producers): the reason a p99 is what it is.
    """

    def __init__(self) -> None:
        self.collections = 0
        self.full = 0
        self.total_s = 0.0
        self.longest_s = 0.0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        self.collections += 1
        self.full += info["generation"] == 2
        self.total_s += took
        self.longest_s = max(self.longest_s, took)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def figures(self) -> dict[str, float]:
        return {
            "gc_collections": self.collections,
            "gc_full": self.full,
            "gc_ms": self.total_s * 1e3,
            "gc_longest_ms": self.longest_s * 1e3,
        }

    def describe(self) -> str:
        return (
            f"{self.collections} collections ({self.full} full), {self.total_s * 1e3:.0f} ms "
            f"in all, the longest {self.longest_s * 1e3:.1f} ms"
        )


async def run_store(
    home: Path,
    total: int,
    producers: int,
    rate: float | None = None,
    *,
    writer_process: bool = False,
) -> dict:
    """Append ``total`` records from ``producers`` tasks to a store in a new home.

    The producers are :func:`drive`'s; the figures add the CPU of the event loop and of the
    writer (thread or process) per record, and the rows per group commit.
    """
    paths = resolve_paths(home)
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    gate.grant([CATEGORY], method="api")
    permit = gate.permit([CATEGORY])
    consent_id = permit.consent_ids[CATEGORY]
    version = permit.policy_version
    store = open_store(paths, settings, max_bytes=2**40, writer_process=writer_process)
    # the first append of a category makes its data key (on the writer thread), as an
    # installation's first event does: made before the clock starts
    warm = Record(category=CATEGORY, consent_id=consent_id, policy_version=version, body=body(0))
    await store.append([warm], permit)
    appender = getattr(store, "_appender", None)
    deadline = time.monotonic() + 10.0
    while appender is not None and not appender.ready and time.monotonic() < deadline:  # noqa: ASYNC110 - a flag set on the loop; no event to wait on
        # the writer process started with the store (an interpreter starting, 0.1-0.3 s);
        # until it is ready the writer thread takes the batches: steady state is measured
        await asyncio.sleep(0.005)
    writer0, cpu0 = thread_cpu(_WRITER), time.process_time()
    commits0 = getattr(store, "_commits", 0)
    result = await drive(store.append, permit, total, producers, rate, consent_id, version)
    writer = thread_cpu(_WRITER) - writer0
    cpu = time.process_time() - cpu0
    child = process_cpu(appender.pid) if appender is not None else 0.0
    commits = getattr(store, "_commits", 0) - commits0
    stats = await store.stats()
    await store.aclose()
    count = result["records"]
    assert stats.total == count + 1, stats
    return result | {
        "cpu_us": cpu / count * 1e6,
        "writer_cpu_us": writer / count * 1e6,
        "child_cpu_us": child / count * 1e6,
        "loop_cpu_us": (cpu - writer) / count * 1e6,
        "rows_per_commit": count / commits if commits else None,
    }


async def drive(
    append: Callable[[list[Record], Any], Awaitable[None]],
    permit: Any,
    total: int,
    producers: int,
    rate: float | None,
    consent_id: str,
    version: str,
) -> dict[str, Any]:
    """Run ``producers`` tasks making and appending ``total`` records; rate, latency, GC, RSS.

    Closed loop (``rate`` None): a producer sends its next record as soon as the last one is
    acknowledged; latency is from the call to the acknowledgement. Open loop: producer ``k``
    sends record ``i`` at its scheduled time ``start + k / (producers * rate) + i / rate`` (or at
    once when it is late), and latency is counted from that scheduled time, so a slow store is
    charged for the wait it caused (no coordinated omission).
    """
    # a fixed histogram (10 µs buckets up to 2 s): measuring must not grow memory itself
    histogram = array("q", bytes(8 * _BUCKETS))
    per = total // producers
    rss: list[tuple[int, float]] = [(0, rss_mib())]
    done = 0
    step = max(total // 10, 1)

    async def producer(k: int) -> None:
        nonlocal done
        perf = time.perf_counter
        for i in range(per):
            if rate is not None:
                t0 = start + k / (producers * rate) + i / rate
                delay = t0 - perf()
                if delay > 0:
                    await asyncio.sleep(delay)
            record = Record(
                category=CATEGORY, consent_id=consent_id, policy_version=version, body=body(i)
            )
            if rate is None:
                t0 = perf()
            await append([record], permit)
            histogram[min(int((perf() - t0) * 100_000), _BUCKETS - 1)] += 1
            done += 1
            if done % step == 0:
                rss.append((done, rss_mib()))

    cpu0 = time.process_time()
    start = time.perf_counter()
    with GcWatch() as collector:
        await asyncio.gather(*(producer(k) for k in range(producers)))
    elapsed = time.perf_counter() - start
    return {
        "records": done,
        "rate": done / elapsed,
        "p50_ms": _percentile(histogram, done, 0.50),
        "p99_ms": _percentile(histogram, done, 0.99),
        "max_ms": _percentile(histogram, done, 1.0),
        "rss": rss,
        "process_cpu_us": (time.process_time() - cpu0) / done * 1e6,
        "gc": collector.describe(),
        **collector.figures(),
    }


async def run_harness(total: int, producers: int) -> dict[str, Any]:
    """The producers of :func:`drive` against a stand-in that stores nothing (the floor).

    Each append takes a future that a ``call_soon`` callback resolves at the end of the loop's
    turn, the way the store wakes its callers (at most 256 a turn, in order): a group commit
    that costs nothing. What is left is the producers' own work (making a record, the latency
    histogram) and asyncio's (a future, a wake-up): the part of the loop's CPU and of the p99
    at many producers that no store can remove.
    """
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[None]] = []

    def settle() -> None:
        _settle_groups([(pending[:], None)])
        pending.clear()

    async def append(records: list[Record], permit: Any) -> None:
        future = loop.create_future()
        if not pending:
            loop.call_soon(settle)
        pending.append(future)
        await future

    return await drive(append, None, total, producers, None, "c-0", "1")


def _percentile(histogram: array, count: int, q: float) -> float:
    """Upper edge of the bucket holding the q-quantile, in ms."""
    target = max(1, int(count * q + 0.5))
    seen = 0
    for bucket, n in enumerate(histogram):
        seen += n
        if seen >= target:
            return (bucket + 1) / 100
    return _BUCKETS / 100


def run_baseline(directory: Path, total: int, batch: int = 1000) -> float:
    """Plaintext rows (same columns, JSON body instead of ciphertext), WAL + FULL, batches."""
    db = directory / "baseline.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE records (seq INTEGER PRIMARY KEY, record_id TEXT NOT NULL UNIQUE, "
        "category TEXT NOT NULL, key_id INTEGER NOT NULL, created_at REAL NOT NULL, "
        "expires_at REAL NOT NULL, state INTEGER NOT NULL DEFAULT 0, payload BLOB NOT NULL)"
    )
    conn.execute("CREATE INDEX records_by_category ON records (category)")
    start = time.perf_counter()
    for base in range(0, total, batch):
        rows = []
        for i in range(base, min(base + batch, total)):
            record = Record(category=CATEGORY, consent_id="c", policy_version="1", body=body(i))
            rows.append(
                (
                    record.record_id,
                    record.category,
                    1,
                    record.created_at,
                    record.created_at + 86400,
                    orjson.dumps({"c": "c", "p": "1", "b": record.body}),
                )
            )
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO records (record_id, category, key_id, created_at, expires_at, payload) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return total / elapsed


def run(quick: bool = False) -> list[dict[str, Any]]:
    """For ``python -m benchmarks``: both writers, between baselines (paired).

    Each round runs the baseline, the store with its writer thread (the default), the store with
    a writer process (``writer_process=True``), in turn; the baseline runs once more at the end.
    ``--quick`` runs three shorter rounds and reports each writer's median round: one round of
    20,000 records lasts under a second, and the disk's ``fsync`` time swings between such
    short runs.
    """
    total = 20_000 if quick else 200_000
    rounds = 3 if quick else 1
    results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    baselines: list[float] = []
    cpu = {False: 0.0, True: 0.0}
    with tempfile.TemporaryDirectory(prefix="wking-ingest-") as tmp:
        root = Path(tmp)
        for n in range(rounds):
            base = root / f"b{n}"
            baselines.append(run_baseline(base, total) if _mkdir(base) else 0.0)
            for process in (False, True):
                started = time.process_time()
                home = root / f"home{n}-{int(process)}"
                results[process].append(
                    asyncio.run(run_store(home, total, 100, writer_process=process))
                )
                cpu[process] += time.process_time() - started
        last = root / "b-last"
        baselines.append(run_baseline(last, total) if _mkdir(last) else 0.0)
    figures = []
    for process in (False, True):
        result = sorted(results[process], key=lambda r: r["rate"])[len(results[process]) // 2]
        workers = (
            f"event loop {result['loop_cpu_us']:.1f} + writer process "
            f"{result['child_cpu_us']:.1f} (with its start-up)"
            if process
            else f"event loop {result['loop_cpu_us']:.1f} + writer {result['writer_cpu_us']:.1f}"
        )
        figures.append(
            {
                "name": "ingest.100_producers" + (".writer_process" if process else ""),
                "value": result["rate"],
                "unit": "records/s",
                "better": "higher",
                "baseline": "plaintext SQLite WAL/FULL batch insert (1,000 rows/commit)",
                "baseline_values": baselines,
                # the budget applies to the store set up for high rates (a writer process);
                # the default writer thread is reported beside it
                "budget": 0.5 if process else None,
                # this process's CPU, and the writer process's (not in process_time)
                "cpu_us_per_item": (cpu[process] / rounds) / result["records"] * 1e6
                + result["child_cpu_us"],
                "detail": f"{result['records']:,} durable encrypted appends, "
                + ("writer process" if process else "writer thread (the default)")
                + (f" (median of {rounds} interleaved rounds)" if rounds > 1 else "")
                + f", p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms"
                + (" (>= 40,000 records/s when quiet)" if process else "")
                + f"; CPU µs/record: {workers}; "
                f"{result['rows_per_commit'] or 0:,.0f} rows per commit",
            }
        )
    figures.append(ten_producers(5_000 if quick else 20_000, baselines))
    figures.append(thousand_producers(total))
    return figures


def ten_producers(total: int, baselines: list[float]) -> dict[str, Any]:
    """10 closed-loop producers, the default writer thread: records/s against the same baseline.

    The issue's budget is absolute (>= 10,000 records/s), so it is stated in the detail and not
    checked (CI checks ratios only); the ratio to the plaintext baseline is reported.
    """
    with tempfile.TemporaryDirectory(prefix="wking-ingest-") as tmp:
        r = asyncio.run(run_store(Path(tmp) / "home", total, 10, writer_process=False))
    return {
        "name": "ingest.10_producers",
        "value": r["rate"],
        "unit": "records/s",
        "better": "higher",
        "baseline": "plaintext SQLite WAL/FULL batch insert (1,000 rows/commit)",
        "baseline_values": baselines,
        "budget": None,
        "cpu_us_per_item": r["loop_cpu_us"] + r["writer_cpu_us"],
        "detail": f"{r['records']:,} durable encrypted appends from 10 closed-loop producers, "
        f"writer thread (the default), p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms; "
        "goal >= 10,000 records/s " + ("met" if r["rate"] >= 10_000 else "NOT met"),
    }


def thousand_producers(total: int) -> dict[str, Any]:
    """The p99 at 1,000 closed-loop producers (writer process), between two harness-alone runs.

    The baseline is the same producers against a stand-in that stores nothing
    (:func:`run_harness`), before and after: the ratio is how much the store multiplies the
    latency the producers and asyncio have anyway. The issue's goal is absolute (p99 <= 25 ms),
    so it is stated in the detail and not checked (CI checks ratios only).
    """
    before = asyncio.run(run_harness(total, 1_000))
    with tempfile.TemporaryDirectory(prefix="wking-ingest-") as tmp:
        r = asyncio.run(run_store(Path(tmp) / "home", total, 1_000, writer_process=True))
    after = asyncio.run(run_harness(total, 1_000))
    return {
        "name": "ingest.1000_producers.p99",
        "value": r["p99_ms"],
        "unit": "ms",
        "better": "lower",
        "baseline": "the same producers, nothing stored (p99)",
        "baseline_values": [before["p99_ms"], after["p99_ms"]],
        "budget": None,
        "cpu_us_per_item": r["loop_cpu_us"] + r["child_cpu_us"],
        "detail": f"{r['records']:,} appends from 1,000 closed-loop producers, writer process: "
        f"{r['rate']:,.0f} records/s, p50 {r['p50_ms']:.2f} ms; goal p99 <= 25 ms "
        + ("met" if r["p99_ms"] <= 25.0 else "NOT met")
        + f"; garbage collector: {r['gc']} (producers alone: {before['gc']})",
    }


def _mkdir(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return True


SCALING: tuple[tuple[int, int, int], ...] = (
    (1, 2_000, 500),
    (10, 20_000, 5_000),
    (100, 100_000, 20_000),
    (1_000, 100_000, 20_000),
)
"""(producers, records, records with --quick) of the scaling table (closed loop)."""

OPEN_LOOP: tuple[tuple[int, float, int, int], ...] = (
    (1_000, 10.0, 50_000, 10_000),
    (1_000, 20.0, 100_000, 20_000),
)
"""(producers, records/s each, records, records with --quick) of the open-loop rows."""


def scaling(*, quick: bool, writer_process: bool = False) -> None:
    """Print the scaling table of docs/performance.md (each row between two baselines)."""
    with open("/proc/loadavg") as f:  # noqa: PTH123
        print(f"load average before: {' '.join(f.read().split()[:3])}")
    print(
        "| producers | records/s | ratio to baseline | p50 ms | p99 ms | rows per commit "
        "| CPU µs/record (loop + writer) | full GCs (longest pause ms) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows: list[tuple[int, float | None, int]] = [
        (producers, None, small if quick else full) for producers, full, small in SCALING
    ]
    rows += [(n, each, small if quick else full) for n, each, full, small in OPEN_LOOP]
    for producers, rate, total in rows:
        with tempfile.TemporaryDirectory(prefix="wking-ingest-") as tmp:
            before = run_baseline(Path(tmp) / "b1", 20_000) if _mkdir(Path(tmp) / "b1") else 0.0
            r = asyncio.run(
                run_store(Path(tmp) / "home", total, producers, rate, writer_process=writer_process)
            )
            after = run_baseline(Path(tmp) / "b2", 20_000) if _mkdir(Path(tmp) / "b2") else 0.0
        ratio = r["rate"] / ((before + after) / 2)
        per = r["rows_per_commit"]
        label = f"{producers:,}"
        if rate is not None:
            label += f", open loop: {rate:,.0f}/s each ({producers * rate:,.0f}/s offered)"
        print(
            f"| {label} | {r['rate']:,.0f} | {ratio:.2f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {'-' if per is None else f'{per:,.0f}'} | "
            f"{r['loop_cpu_us']:.1f} + "
            f"{r['child_cpu_us'] if writer_process else r['writer_cpu_us']:.1f} | "
            f"{r['gc_full']} ({r['gc_longest_ms']:.1f}) |",
            flush=True,
        )
    producers, full, small = SCALING[-1]
    floor = asyncio.run(run_harness(small if quick else full, producers))
    print(
        f"| {producers:,}, the producers alone (nothing stored) | {floor['rate']:,.0f} | - | "
        f"{floor['p50_ms']:.2f} | {floor['p99_ms']:.2f} | - | {floor['process_cpu_us']:.1f} | "
        f"{floor['gc_full']} ({floor['gc_longest_ms']:.1f}) |",
        flush=True,
    )
    with open("/proc/loadavg") as f:  # noqa: PTH123
        print(f"load average after: {' '.join(f.read().split()[:3])}")


def _goal(producers: int, result: dict[str, Any], baseline: float) -> tuple[str, bool]:
    """The issue's goal for this many closed-loop producers, and whether ``result`` meets it."""
    if producers >= 1_000:
        return "p99 <= 25 ms", result["p99_ms"] <= 25.0
    if producers >= 100:
        return ">= 40,000 records/s and >= 0.5x the baseline", (
            result["rate"] >= 40_000 and result["rate"] / baseline >= 0.5
        )
    if producers >= 10:
        return ">= 10,000 records/s", result["rate"] >= 10_000
    return "none (reported only)", True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--producers", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="20,000 records")
    parser.add_argument("--baseline-records", type=int, default=None)
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="the scaling table: 1, 10, 100 and 1,000 producers (and 1,000 open loop), "
        "each between two baselines",
    )
    parser.add_argument(
        "--harness",
        action="store_true",
        help="also run the producers against a stand-in that stores nothing (their own cost)",
    )
    parser.add_argument(
        "--writer-process",
        action="store_true",
        help="open the store with writer_process=True (a child process seals and commits)",
    )
    args = parser.parse_args()
    if args.scaling:
        scaling(quick=args.quick, writer_process=args.writer_process)
        return
    total = 20_000 if args.quick else args.records
    with tempfile.TemporaryDirectory(prefix="wking-ingest-") as tmp:
        result = asyncio.run(
            run_store(Path(tmp) / "home", total, args.producers, writer_process=args.writer_process)
        )
        baseline_n = args.baseline_records or min(total, 200_000)
        baseline = run_baseline(Path(tmp), baseline_n)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"records            {result['records']:,} from {args.producers} producers")
    print(f"store rate         {result['rate']:,.0f} records/s (durable, encrypted)")
    print(
        f"append latency     p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
        f"max {result['max_ms']:.1f} ms"
    )
    print(
        f"baseline           {baseline:,.0f} rows/s (plaintext SQLite WAL FULL, batch 1000, "
        f"{baseline_n:,} rows)"
    )
    print(f"ratio              {result['rate'] / baseline:.2f}")
    writer = "writer process" if args.writer_process else "writer"
    writer_cpu = result["child_cpu_us"] if args.writer_process else result["writer_cpu_us"]
    print(
        f"CPU per record     loop {result['loop_cpu_us']:.1f} µs + {writer} "
        f"{writer_cpu:.1f} µs; {result['rows_per_commit'] or 0:,.0f} rows per commit"
    )
    print(f"garbage collector  {result['gc']}")
    if args.harness:
        floor = asyncio.run(run_harness(total, args.producers))
        print(
            f"harness alone      {floor['rate']:,.0f} records/s, p50 {floor['p50_ms']:.2f} ms, "
            f"p99 {floor['p99_ms']:.2f} ms, loop {floor['process_cpu_us']:.1f} µs/record; "
            f"garbage collector: {floor['gc']}"
        )
    print(f"peak RSS           {peak:.1f} MiB")
    print("RSS over the run   " + "  ".join(f"{n:,}:{m:.0f}MiB" for n, m in result["rss"]))
    goal, ok = _goal(args.producers, result, baseline)
    print(f"goal               {goal}: " + ("met" if ok else "NOT met"))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
