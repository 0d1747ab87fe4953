"""Property test: any sequence of store operations keeps the store equal to a simple model."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.models import Record
from wking_device.store import open_store

CATEGORIES = ("operation_logs", "device_info", "diagnostics")

ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=6)),
        st.tuples(st.just("claim"), st.integers(1, 8)),
        st.tuples(st.just("ack"), st.integers(0, 8)),
        st.tuples(st.just("release"), st.integers(0, 8)),
        st.tuples(st.just("purge"), st.sampled_from(CATEGORIES)),
        st.tuples(st.just("reopen"), st.none()),
    ),
    max_size=14,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=ops)
# a claimed record purged, then a new one numbered with its seq: not claimed, and claimable
@example(
    program=[
        ("append", ["device_info"]),
        ("claim", 1),
        ("purge", "device_info"),
        ("append", ["operation_logs"]),
        ("claim", 1),
    ]
)
def test_store_matches_model(program) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run(Path(tmp), program))


async def _run(home: Path, program) -> None:
    paths = resolve_paths(home)
    settings_ = load_settings(paths)
    gate = open_installation_gate(paths, settings_)
    gate.grant(CATEGORIES, method="api")
    permit = gate.permit(CATEGORIES)
    store = open_store(paths, settings_)
    kept: dict[str, Record] = {}  # the model: record id -> record
    claimed: list[str] = []  # claimed, not acked or released, in claim order
    try:
        for op, arg in program:
            if op == "append":
                records = [
                    Record(
                        category=c,
                        consent_id=permit.consent_ids[c],
                        policy_version=permit.policy_version,
                        body={"i": i},
                    )
                    for i, c in enumerate(arg)
                ]
                await store.append(records, permit)
                kept.update((r.record_id, r) for r in records)
            elif op == "claim":
                got = await store.claim(arg)
                pending = [rid for rid in kept if rid not in claimed]
                assert [r.record_id for r in got] == pending[:arg]
                claimed += [r.record_id for r in got]
            elif op == "ack":
                ids, claimed = claimed[:arg], claimed[arg:]
                assert await store.ack(ids) == len(ids)
                for rid in ids:
                    del kept[rid]
            elif op == "release":
                ids, claimed = claimed[:arg], claimed[arg:]
                assert await store.release(ids) == len(ids)
            elif op == "purge":
                await store.purge(arg)
                kept = {rid: r for rid, r in kept.items() if r.category != arg}
                claimed = [rid for rid in claimed if rid in kept]
            else:
                await store.aclose()
                store = open_store(paths, settings_)
                claimed = []  # claims of a closed writer become pending again
            stats = await store.stats()
            assert stats.total == len(kept)
            assert stats.claimed == len(claimed)
        assert {r.record_id: r for r in await store.export()} == kept
    finally:
        await store.aclose()
