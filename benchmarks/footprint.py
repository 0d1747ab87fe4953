"""Footprint of the agent: peak RSS and mean CPU with 10 simulated speakers over 60 s (issue 9).

Subject: ``wking agent run`` as the CLI builds it — the real :class:`~wking_device.agent.Agent`
with its encrypted store, consent gate and status file, scanning and reading every simulated
speaker every ``--interval`` seconds (default 5, the command's default) — in a fresh process on
a fresh home, for ``--seconds`` (default 60). Between cycles it sits idle with the speakers
around: that is most of the time, and what a Raspberry Pi pays for around the clock.

Baseline, in the same run and the same way, in its own process: the same simulated world (10
speakers advertising, the bumble central and its emulated controllers, in the process as in the
agent's) with **raw bleak** doing the Bluetooth part of each cycle — a scan as long as the
agent's, then a connection to each speaker reading four characteristics — and nothing else (no
profiles, sessions, consent, store or upload). The agent's own share is the difference (CPU %
and RSS): what wking_device adds to the Bluetooth work, the simulator's side of that work taken
out. (Sampling the main thread's stack to split the simulator from the agent, as before session
22, undercounted: the sampler gets the GIL mostly while the loop waits in ``select``.) The
sampler thread that notes the RSS takes its own CPU time out of the process's.

The agent uploads as a configured agent does: to the reference receiver (over TLS, a private
CA) in a third process that is not counted, every ``--interval`` seconds. CPU is counted over a
steady state: from the end of a warm-up (``--warmup``, default one cycle: imports, key store and
SQLite set-up, the first scan) to the end; the peak RSS over the whole run.

Budget (issues 9 and 11): the agent process's peak RSS <= 120 MB (goal 80 MB), with the
simulated world in it; the agent's own mean CPU (by subtraction) <= 5 % of one core. For
``python -m benchmarks`` (:func:`run`): ``footprint.rss`` and ``footprint.cpu``, each against its
absolute budget; ``--quick`` runs both processes at once for 4 s after a 1.5 s warm-up and
gives the RSS only (a window shorter than a cycle says nothing of the mean CPU).

    .venv/bin/python -m benchmarks.footprint               # 10 speakers, 60 s each process
    .venv/bin/python -m benchmarks.footprint --seconds 15  # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_SAMPLE_S = 0.005
RSS_LIMIT_MB = 120.0
"""The budget of ``footprint.rss`` (issue 11; goal 80 MB)."""
CPU_LIMIT_PCT = 5.0
"""The budget of ``footprint.cpu``: the agent's own mean CPU, % of one core (issue 9)."""


def _status_mb(field: str) -> float:
    """A size from ``/proc/self/status`` (``VmRSS:`` now, ``VmHWM:`` the peak), in MB."""
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return 0.0


def _rss_mb() -> float:
    return _status_mb("VmRSS:")


class _Sampler:
    """Notes the peak RSS, and the process's CPU and the clock at the measured window's ends.

    The window starts after the warm-up and lasts ``seconds``: the steady state. The sampler's
    own CPU time (it wakes every 5 ms) is taken out of the process's.
    """

    def __init__(self, warmup: float, seconds: float) -> None:
        self.rss_peak = 0.0
        self.mark: tuple[float, float, float] | None = None  # (process CPU, wall, own CPU)
        self.end: tuple[float, float, float] | None = None
        self._warmup = warmup
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Sampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(_SAMPLE_S):
            ticks += 1
            if ticks % 200 == 0:
                self.rss_peak = max(self.rss_peak, _rss_mb())
            elapsed = time.monotonic() - self._started
            if self.mark is None and elapsed >= self._warmup:
                self.mark = (_process_cpu(), time.monotonic(), time.thread_time())
            # the window lasts `seconds` from its start as noted (this thread may get the GIL
            # late at the warm-up's end: counted from the run's start, the window was short)
            if (
                self.end is None
                and self.mark is not None
                and time.monotonic() - self.mark[1] >= self._seconds
            ):
                self.end = (_process_cpu(), time.monotonic(), time.thread_time())
        self.rss_peak = max(self.rss_peak, _rss_mb())

    def figures(self) -> tuple[float, float]:
        """CPU seconds of the process (less this sampler's) and wall seconds, warm-up to end."""
        if self.mark is None or self.end is None:
            raise SystemExit("the run ended before its measured window did")
        (cpu0, wall0, own0), (cpu1, wall1, own1) = self.mark, self.end
        return (cpu1 - cpu0) - (own1 - own0), wall1 - wall0


def _process_cpu() -> float:
    times = os.times()
    return times.user + times.system


async def _raw_bleak_cycles(speakers: int, seconds: float, interval: float) -> dict[str, Any]:
    """The baseline: the same world, and raw bleak doing each cycle's Bluetooth part."""
    from bleak import BleakClient, BleakScanner  # noqa: PLC0415

    from wking_device.protocol import (  # noqa: PLC0415
        BATTERY_LEVEL_UUID,
        FIRMWARE_REVISION_UUID,
        MANUFACTURER_NAME_UUID,
        MODEL_NUMBER_UUID,
        WKING_SERVICE_UUID,
    )
    from wking_device.sim import SimWorld  # noqa: PLC0415

    uuids = (MANUFACTURER_NAME_UUID, MODEL_NUMBER_UUID, FIRMWARE_REVISION_UUID, BATTERY_LEVEL_UUID)
    cycles = reads = 0
    deadline = time.monotonic() + seconds
    async with SimWorld.fleet(speakers, instant_connect=True) as world:
        gate = asyncio.Semaphore(10)  # the agent's connection limit on one adapter

        async def read(device: Any) -> None:
            nonlocal reads
            async with gate, BleakClient(device, backend=world.backend.client) as client:
                for uuid in uuids:
                    await client.read_gatt_char(uuid)
                reads += 1

        async def scan() -> list[Any]:
            seen: dict[str, Any] = {}
            async with BleakScanner(
                lambda device, _: seen.setdefault(device.address, device),
                service_uuids=[WKING_SERVICE_UUID],
                backend=world.backend.scanner,
            ):
                await asyncio.sleep(min(1.5, interval))  # as long as the agent's scan
            return list(seen.values())

        while time.monotonic() < deadline:
            started = time.monotonic()
            await asyncio.gather(*(read(device) for device in await scan()))
            cycles += 1
            # as the agent: a cycle starts every interval (less the time the last one took)
            pause = min(started + interval, deadline) - time.monotonic()
            await asyncio.sleep(max(0.0, pause))
    return {"cycles": cycles, "reads_ok": reads}


async def _agent_run(
    speakers: int, seconds: float, interval: float, home: Path, upload: tuple[str, str] | None
) -> dict[str, Any]:
    from wking_device.agent import STATUS_FILE, Agent  # noqa: PLC0415
    from wking_device.collect import open_installation_gate  # noqa: PLC0415
    from wking_device.config import load_settings, resolve_paths  # noqa: PLC0415
    from wking_device.sim import SimWorld  # noqa: PLC0415
    from wking_device.store import open_store  # noqa: PLC0415
    from wking_device.upload import (  # noqa: PLC0415
        TLSOptions,
        UploadTarget,
        open_uploader,
        parse_endpoint,
    )

    paths = resolve_paths(home)
    paths.ensure()
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    gate.grant(["operation_logs", "device_info", "software_info", "diagnostics"])
    async with (
        SimWorld.fleet(speakers, instant_connect=True) as world,
        open_store(paths, settings) as store,
    ):
        uploader = None
        if upload is not None:
            target = UploadTarget(
                endpoint=parse_endpoint(upload[0]), tls=TLSOptions(ca_file=Path(upload[1]))
            )
            uploader = open_uploader(target, store=store, gate=gate, data_dir=paths.data_dir)
        agent = Agent(
            gate=gate,
            store=store,
            settings=settings,
            backend=world.backend,
            connect_all=True,
            interval=interval,
            scan_seconds=min(1.5, interval),  # as `wking --simulate N agent run`
            adapter_mac="",
            paths=paths,
            status_file=paths.data_dir / STATUS_FILE,
            uploader=uploader,
            upload_interval=interval,
        )
        try:
            summary = await agent.run(seconds)
        finally:
            if uploader is not None:
                await uploader.aclose()
    sent = (summary.upload or {}).get("sent", 0)
    return {
        "cycles": summary.cycles,
        "reads_ok": summary.reads_ok,
        "records": summary.records,
        "uploaded": sent,
    }


def _child(
    kind: str,
    speakers: int,
    seconds: float,
    interval: float,
    warmup: float,
    upload: tuple[str, str] | None,
) -> None:
    """Run one subject in this process and print its figures as JSON."""
    import wking_device.sim  # noqa: PLC0415, F401 - imports before the clock starts, as in a service

    extra: dict[str, Any] = {}
    # a little past the measured window: its end is noted while the subject still runs (the
    # agent's shutdown, closing the store and the uploader, is not the steady state), also
    # when the window started late
    total = warmup + seconds + 1.0
    with tempfile.TemporaryDirectory() as tmp, _Sampler(warmup, seconds) as sampler:
        if kind == "bleak":
            extra = asyncio.run(_raw_bleak_cycles(speakers, total, interval))
        else:
            extra = asyncio.run(_agent_run(speakers, total, interval, Path(tmp), upload))
    cpu, wall = sampler.figures()
    # VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across exec, so a child of a
    # large parent (``python -m benchmarks`` after the ingest runs) would report the parent's
    peak = _status_mb("VmHWM:")
    print(
        json.dumps(
            {
                "kind": kind,
                "wall_s": wall,
                "cpu_s": cpu,
                "rss_peak_mb": max(peak, sampler.rss_peak),
                **extra,
            }
        )
    )


def _start(
    kind: str,
    speakers: int,
    seconds: float,
    interval: float,
    warmup: float,
    upload: tuple[str, str] | None,
) -> subprocess.Popen[str]:
    args = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--speakers",
        str(speakers),
        "--seconds",
        str(seconds),
        "--interval",
        str(interval),
        "--warmup",
        str(warmup),
    ]
    if upload is not None:
        args += ["--endpoint", upload[0], "--ca-file", upload[1]]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"footprint child failed ({proc.returncode}): {err.strip()[-500:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["cpu_pct"] = 100 * result["cpu_s"] / result["wall_s"]
    return result


def measure(
    *,
    speakers: int = 10,
    seconds: float = 60.0,
    interval: float = 5.0,
    warmup: float | None = None,
    concurrent: bool = False,
    upload: bool = True,
) -> dict[str, Any]:
    """The baseline (the world and raw bleak) and the agent, one after the other or at once.

    ``upload``: the agent uploads to the reference receiver in a third process, every
    ``interval`` seconds. Returns ``{"bleak": ..., "agent": ...}``, each with ``cpu_pct``
    (% of a core over the measured window), ``rss_peak_mb``, ``cycles`` and ``reads_ok``.
    """
    from benchmarks.upload import ReceiverProcess  # noqa: PLC0415

    warmup = interval if warmup is None else warmup
    timeout = (warmup + seconds) * 3 + 120
    with tempfile.TemporaryDirectory(prefix="wking-footprint-") as tmp:
        rx = ReceiverProcess(Path(tmp), profile=False) if upload else None
        target = (rx.endpoint, str(rx.ca_file)) if rx is not None else None
        try:
            shape = (speakers, seconds, interval, warmup)
            if concurrent:
                procs = [_start("bleak", *shape, None), _start("agent", *shape, target)]
                bleak, agent = (_finish(proc, timeout) for proc in procs)
            else:
                bleak = _finish(_start("bleak", *shape, None), timeout)
                agent = _finish(_start("agent", *shape, target), timeout)
        finally:
            if rx is not None:
                rx.stop()
    return {"bleak": bleak, "agent": agent}


def run(quick: bool = False) -> list[dict[str, Any]]:
    """For ``python -m benchmarks``: the agent's peak RSS and its own CPU, against the budgets.

    Full: the baseline, then the agent, 40 s each after a one-cycle warm-up (5 s). Quick: both
    at once (each mostly idle), 4 s after a 1.5 s warm-up, and the peak RSS only: a window
    shorter than a cycle says nothing of the mean CPU.
    """
    m = measure(seconds=4.0, warmup=1.5, concurrent=True) if quick else measure(seconds=40.0)
    bleak, agent = m["bleak"], m["agent"]
    how = (
        "10 simulated speakers, a cycle every 5 s, uploads to the reference receiver every 5 s; "
        + ("baseline and agent at once; " if quick else "")
        + f"{agent['cycles']} cycles, {agent['reads_ok']} reads, "
        f"{sum(agent['records'].values())} records, {agent['uploaded']} uploaded"
    )
    figures = [
        {
            "name": "footprint.rss",
            "value": agent["rss_peak_mb"],
            "unit": "MB",
            "better": "lower",
            "baseline": "absolute budget",
            "baseline_values": [RSS_LIMIT_MB],
            "budget": 1.0,
            "detail": f"peak RSS of the agent process, the simulated world in it (the world "
            f"with raw bleak: {bleak['rss_peak_mb']:.1f} MB, so the agent's own "
            f"{agent['rss_peak_mb'] - bleak['rss_peak_mb']:.1f} MB); budget 120 MB (goal 80); "
            + how,
        }
    ]
    if not quick:
        figures.append(
            {
                "name": "footprint.cpu",
                "value": agent["cpu_pct"] - bleak["cpu_pct"],
                "unit": "% of a core",
                "better": "lower",
                "baseline": "absolute budget",
                "baseline_values": [CPU_LIMIT_PCT],
                "budget": 1.0,
                "detail": f"the agent's own mean CPU over {agent['wall_s']:.0f} s after the "
                f"warm-up: agent + world {agent['cpu_pct']:.2f} % less the world with raw bleak "
                f"doing each cycle's scan and reads {bleak['cpu_pct']:.2f} % "
                f"({bleak['cycles']} cycles, {bleak['reads_ok']} reads); budget 5 %",
            }
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speakers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=None, help="default: one interval")
    parser.add_argument("--no-upload", action="store_true", help="the agent uploads nothing")
    parser.add_argument("--child", choices=["bleak", "agent"])
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--ca-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        upload = (args.endpoint, args.ca_file) if args.endpoint else None
        warmup = args.interval if args.warmup is None else args.warmup
        _child(args.child, args.speakers, args.seconds, args.interval, warmup, upload)
        return
    print(
        f"{args.speakers} simulated speakers, {args.seconds:g} s per process after a warm-up, "
        f"a cycle every {args.interval:g} s"
        + ("" if args.no_upload else ", the agent uploading to the reference receiver as often")
        + f"; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    m = measure(
        speakers=args.speakers,
        seconds=args.seconds,
        interval=args.interval,
        warmup=args.warmup,
        upload=not args.no_upload,
    )
    bleak, agent = m["bleak"], m["agent"]
    print(f"{'':36}{'RSS peak MB':>12}{'CPU % of a core':>17}")
    base = "baseline: world + raw bleak cycles"
    print(f"{base:36}{bleak['rss_peak_mb']:12.1f}{bleak['cpu_pct']:17.2f}")
    print(f"{'agent + simulated world':36}{agent['rss_peak_mb']:12.1f}{agent['cpu_pct']:17.2f}")
    own = agent["cpu_pct"] - bleak["cpu_pct"]
    own_rss = agent["rss_peak_mb"] - bleak["rss_peak_mb"]
    print(f"{'agent by subtraction':36}{own_rss:12.1f}{own:17.2f}")
    print(
        f"cycles: agent {agent['cycles']} ({agent['reads_ok']} reads, "
        f"{sum(agent['records'].values())} records, {agent['uploaded']} uploaded), "
        f"raw bleak {bleak['cycles']} ({bleak['reads_ok']} reads)"
    )
    verdict = "within" if agent["rss_peak_mb"] <= RSS_LIMIT_MB else "OVER"
    print(
        f"budget: RSS {agent['rss_peak_mb']:.1f} MB {verdict} 120 MB (goal 80), the world "
        f"included; the agent's own CPU {own:.2f} % "
        f"{'within' if own <= CPU_LIMIT_PCT else 'OVER'} 5 %"
    )


if __name__ == "__main__":
    main()
