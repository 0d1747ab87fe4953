"""Footprint of the agent: peak RSS and mean CPU with 10 simulated speakers over 60 s (issue 9).

Subject: ``wking agent run`` as the CLI builds it — the real :class:`~wking_device.agent.Agent`
with its encrypted store, consent gate and status file, scanning and reading every simulated
speaker every ``--interval`` seconds (default 5, the command's default) — in a fresh process on
a fresh home, for ``--seconds`` (default 60). Between cycles it sits idle with the speakers
around: that is most of the time, and what a Raspberry Pi pays for around the clock.

Baseline, in the same run and the same way: the simulated world alone (the same 10 speakers
advertising and the bumble central, no agent), in its own process. The agent's own share is
separated twice:

- by subtraction: agent process - world-alone process (CPU % and RSS);
- by sampling the agent process's main thread every 5 ms (``sys._current_frames``): a sample
  whose innermost frame is the event loop's ``select`` is idle; otherwise it is charged to the
  simulator when any frame on the stack is in ``wking_device/sim`` or ``bumble``, else to the
  agent (wking_device, bleak, SQLite, cryptography). The sampler's own CPU time is measured
  (``time.thread_time``) and taken out of the process's CPU.

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
    """Samples the main thread's stack after a warm-up (idle, simulator or agent); peak RSS.

    At the end of the warm-up it notes the process's CPU times, the wall clock and its own CPU
    time: the figures cover the steady state from there.
    """

    def __init__(self, warmup: float, seconds: float) -> None:
        self.counts = {"idle": 0, "sim": 0, "agent": 0}
        self.rss_peak = 0.0
        self.mark: tuple[float, float, float] | None = None  # (process CPU, wall, own CPU)
        self.end: tuple[float, float, float] | None = None
        self._warmup = warmup
        self._seconds = seconds
        self._stop = threading.Event()
        self._main = threading.main_thread().ident
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
            if self.mark is None:
                if elapsed < self._warmup:
                    continue
                self.mark = (_process_cpu(), time.monotonic(), time.thread_time())
            if self.end is None and elapsed >= self._warmup + self._seconds:
                self.end = (_process_cpu(), time.monotonic(), time.thread_time())
            if self.end is None:
                frame = sys._current_frames().get(self._main)
                if frame is not None:
                    self.counts[_classify(frame)] += 1
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


def _classify(frame: Any) -> str:
    code = frame.f_code
    if code.co_name in {"select", "poll", "epoll"} or code.co_filename.endswith("selectors.py"):
        return "idle"
    while frame is not None:
        name = frame.f_code.co_filename
        if f"{os.sep}bumble{os.sep}" in name or f"wking_device{os.sep}sim{os.sep}" in name:
            return "sim"
        frame = frame.f_back
    return "agent"


async def _world_alone(speakers: int, seconds: float) -> None:
    from wking_device.sim import SimWorld  # noqa: PLC0415

    async with SimWorld.fleet(speakers, instant_connect=True):
        await asyncio.sleep(seconds)


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
    # agent's shutdown, closing the store and the uploader, is not the steady state)
    total = warmup + seconds + 0.5
    with tempfile.TemporaryDirectory() as tmp, _Sampler(warmup, seconds) as sampler:
        if kind == "world":
            asyncio.run(_world_alone(speakers, total))
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
                "samples": sampler.counts,
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
    """The world alone and the agent (with it), one after the other or at once: their figures.

    ``upload``: the agent uploads to the reference receiver in a third process, every
    ``interval`` seconds. Returns ``{"world": ..., "agent": ..., "agent_share_pct": ...}``.
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
                procs = [_start(kind, *shape, target) for kind in ("world", "agent")]
                world, agent = (_finish(proc, timeout) for proc in procs)
            else:
                world = _finish(_start("world", *shape, None), timeout)
                agent = _finish(_start("agent", *shape, target), timeout)
        finally:
            if rx is not None:
                rx.stop()
    busy = agent["samples"]["sim"] + agent["samples"]["agent"]
    share = agent["cpu_pct"] * agent["samples"]["agent"] / busy if busy else 0.0
    return {"world": world, "agent": agent, "agent_share_pct": share}


def run(quick: bool = False) -> list[dict[str, Any]]:
    """For ``python -m benchmarks``: the agent's peak RSS and its own CPU, against the budgets.

    Full: the world alone, then the agent, 40 s each after a one-cycle warm-up (5 s). Quick:
    both at once (each mostly idle), 4 s after a 1.5 s warm-up, and the peak RSS only: a
    window shorter than a cycle says nothing of the mean CPU.
    """
    m = measure(seconds=4.0, warmup=1.5, concurrent=True) if quick else measure(seconds=40.0)
    world, agent = m["world"], m["agent"]
    how = (
        "10 simulated speakers, a cycle every 5 s, uploads to the reference receiver every 5 s; "
        + ("world and agent at once; " if quick else "")
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
            f"alone: {world['rss_peak_mb']:.1f} MB, so the agent's own "
            f"{agent['rss_peak_mb'] - world['rss_peak_mb']:.1f} MB); budget 120 MB (goal 80); "
            + how,
        }
    ]
    if not quick:
        figures.append(
            {
                "name": "footprint.cpu",
                "value": agent["cpu_pct"] - world["cpu_pct"],
                "unit": "% of a core",
                "better": "lower",
                "baseline": "absolute budget",
                "baseline_values": [CPU_LIMIT_PCT],
                "budget": 1.0,
                "detail": f"the agent's own mean CPU over {agent['wall_s']:.0f} s after the "
                f"warm-up: agent + world {agent['cpu_pct']:.2f} % less the world alone "
                f"{world['cpu_pct']:.2f} % (by sampling the agent's thread: "
                f"{m['agent_share_pct']:.2f} %); budget 5 %",
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
    parser.add_argument("--child", choices=["world", "agent"])
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
        f"agent cycle every {args.interval:g} s"
        + ("" if args.no_upload else ", uploads to the reference receiver as often")
        + f"; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    m = measure(
        speakers=args.speakers,
        seconds=args.seconds,
        interval=args.interval,
        warmup=args.warmup,
        upload=not args.no_upload,
    )
    world, agent = m["world"], m["agent"]
    busy = agent["samples"]["sim"] + agent["samples"]["agent"]
    total = busy + agent["samples"]["idle"]
    print(f"{'':32}{'RSS peak MB':>12}{'CPU % of a core':>17}")
    baseline = "baseline: simulated world alone"
    print(f"{baseline:32}{world['rss_peak_mb']:12.1f}{world['cpu_pct']:17.2f}")
    print(f"{'agent + simulated world':32}{agent['rss_peak_mb']:12.1f}{agent['cpu_pct']:17.2f}")
    own = agent["cpu_pct"] - world["cpu_pct"]
    own_rss = agent["rss_peak_mb"] - world["rss_peak_mb"]
    print(f"{'agent by subtraction':32}{own_rss:12.1f}{own:17.2f}")
    print(
        f"{'agent by sampling':32}{'':12}{m['agent_share_pct']:17.2f}"
        f"   (main thread: {agent['samples']['agent']} agent, {agent['samples']['sim']} sim, "
        f"{agent['samples']['idle']} idle of {total} samples)"
    )
    print(
        f"agent cycles {agent['cycles']}, reads {agent['reads_ok']}, "
        f"records {sum(agent['records'].values())}, uploaded {agent['uploaded']}"
    )
    verdict = "within" if agent["rss_peak_mb"] <= RSS_LIMIT_MB else "OVER"
    print(
        f"budget: RSS {agent['rss_peak_mb']:.1f} MB {verdict} 120 MB (goal 80), the world "
        f"included; the agent's own CPU {own:.2f} % "
        f"{'within' if own <= CPU_LIMIT_PCT else 'OVER'} 5 %"
    )


if __name__ == "__main__":
    main()
