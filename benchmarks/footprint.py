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

Budget (issue 9): RSS <= 120 MB (goal 80 MB); mean CPU <= 5 % of one core, of which the agent's
own share is reported. The figures are printed; nothing is asserted.

    .venv/bin/python benchmarks/footprint.py               # 10 speakers, 60 s each process
    .venv/bin/python benchmarks/footprint.py --seconds 15  # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_SAMPLE_S = 0.005


def _rss_mb() -> float:
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Sampler:
    """Samples the main thread's stack: idle, simulator or agent."""

    def __init__(self) -> None:
        self.counts = {"idle": 0, "sim": 0, "agent": 0}
        self.rss_peak = 0.0
        self.thread_cpu = 0.0
        self._stop = threading.Event()
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(_SAMPLE_S):
            frame = sys._current_frames().get(self._main)
            if frame is None:
                continue
            self.counts[_classify(frame)] += 1
            ticks += 1
            if ticks % 200 == 0:
                self.rss_peak = max(self.rss_peak, _rss_mb())
        self.thread_cpu = time.thread_time()


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


async def _agent_run(speakers: int, seconds: float, interval: float, home: Path) -> dict[str, Any]:
    from wking_device.agent import STATUS_FILE, Agent  # noqa: PLC0415
    from wking_device.collect import open_installation_gate  # noqa: PLC0415
    from wking_device.config import load_settings, resolve_paths  # noqa: PLC0415
    from wking_device.sim import SimWorld  # noqa: PLC0415
    from wking_device.store import open_store  # noqa: PLC0415

    paths = resolve_paths(home)
    paths.ensure()
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    gate.grant(["operation_logs", "device_info", "software_info", "diagnostics"])
    async with (
        SimWorld.fleet(speakers, instant_connect=True) as world,
        open_store(paths, settings) as store,
    ):
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
        )
        summary = await agent.run(seconds)
    return {"cycles": summary.cycles, "reads_ok": summary.reads_ok, "records": summary.records}


def _child(kind: str, speakers: int, seconds: float, interval: float) -> None:
    """Run one subject in this process and print its figures as JSON."""
    import wking_device.sim  # noqa: PLC0415, F401 - imports before the clock starts, as in a service

    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, _Sampler() as sampler:
        before = os.times()
        started = time.monotonic()
        if kind == "world":
            asyncio.run(_world_alone(speakers, seconds))
        else:
            extra = asyncio.run(_agent_run(speakers, seconds, interval, Path(tmp)))
        wall = time.monotonic() - started
        after = os.times()
    cpu = (after.user - before.user) + (after.system - before.system) - sampler.thread_cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "kind": kind,
                "wall_s": wall,
                "cpu_s": cpu,
                "sampler_cpu_s": sampler.thread_cpu,
                "rss_peak_mb": max(peak, sampler.rss_peak),
                "samples": sampler.counts,
                **extra,
            }
        )
    )


def _spawn(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--speakers",
            str(args.speakers),
            "--seconds",
            str(args.seconds),
            "--interval",
            str(args.interval),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=args.seconds * 3 + 120,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speakers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--child", choices=["world", "agent"])
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.speakers, args.seconds, args.interval)
        return
    print(
        f"{args.speakers} simulated speakers, {args.seconds:g} s per process, agent cycle every "
        f"{args.interval:g} s; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    world = _spawn("world", args)
    agent = _spawn("agent", args)
    for row in (world, agent):
        row["cpu_pct"] = 100 * row["cpu_s"] / row["wall_s"]
    busy = agent["samples"]["sim"] + agent["samples"]["agent"]
    total = busy + agent["samples"]["idle"]
    agent_share = agent["cpu_pct"] * agent["samples"]["agent"] / busy if busy else 0.0
    print(f"{'':32}{'RSS peak MB':>12}{'CPU % of a core':>17}")
    baseline = "baseline: simulated world alone"
    print(f"{baseline:32}{world['rss_peak_mb']:12.1f}{world['cpu_pct']:17.2f}")
    print(f"{'agent + simulated world':32}{agent['rss_peak_mb']:12.1f}{agent['cpu_pct']:17.2f}")
    print(
        f"{'agent by subtraction':32}{agent['rss_peak_mb'] - world['rss_peak_mb']:12.1f}"
        f"{agent['cpu_pct'] - world['cpu_pct']:17.2f}"
    )
    print(
        f"{'agent by sampling':32}{'':12}{agent_share:17.2f}"
        f"   (main thread: {agent['samples']['agent']} agent, {agent['samples']['sim']} sim, "
        f"{agent['samples']['idle']} idle of {total} samples)"
    )
    print(
        f"ratio CPU agent+world / world alone: {agent['cpu_pct'] / max(world['cpu_pct'], 1e-9):.2f}"
        f"; agent cycles {agent['cycles']}, reads {agent['reads_ok']}, "
        f"records {sum(agent['records'].values())}"
    )
    verdict = "within" if agent["rss_peak_mb"] <= 120 else "OVER"
    print(
        f"budget: RSS {agent['rss_peak_mb']:.1f} MB {verdict} 120 MB (goal 80); CPU "
        f"{agent['cpu_pct']:.2f} % {'within' if agent['cpu_pct'] <= 5 else 'OVER'} 5 %"
    )


if __name__ == "__main__":
    main()
