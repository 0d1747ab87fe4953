"""A caller's wrong values get a typed UsageError naming the argument, never a silent no-op.

``store.ack(record.record_id)`` (one id, not a list of them) used to ack each *character* of the
id: nothing was deleted, nothing was said, and the record was uploaded again and again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wking_device.errors import ConsentRequired, ForeignPermit, UsageError
from wking_device.models import Record
from wking_device.store import key_scope, open_store
from wking_device.store._files import DB_FILE

if TYPE_CHECKING:
    from collections.abc import Callable

    from wking_device.config import Paths
    from wking_device.consent import ConsentGate, Permit
    from wking_device.store import RecordStore


@pytest.mark.parametrize("writer", ["thread"])
@pytest.mark.parametrize("method", ["ack", "release", "reject"])
async def test_one_record_id_instead_of_a_list_is_refused(
    store: RecordStore, make_record: Callable[..., Record], permit: Permit, method: str
) -> None:
    record = make_record()
    await store.append([record], permit)
    assert [r.record_id for r in await store.claim(5)] == [record.record_id]
    with pytest.raises(UsageError, match="record_ids") as caught:
        await getattr(store, method)(record.record_id)
    assert "[" in (caught.value.remedy or "")
    # nothing happened: the record is still claimed, and a list does the job
    stats = await store.stats()
    assert (stats.claimed, stats.pending) == (1, 0)
    assert await getattr(store, method)([record.record_id]) == 1


@pytest.mark.parametrize("writer", ["thread"])
async def test_one_category_instead_of_a_list_is_refused_by_export(
    store: RecordStore, make_record: Callable[..., Record], permit: Permit
) -> None:
    await store.append([make_record()], permit)
    with pytest.raises(UsageError, match="categories"):
        await store.export("operation_logs")
    assert len(await store.export(["operation_logs"])) == 1


@pytest.mark.parametrize("writer", ["thread"])
async def test_one_scope_instead_of_a_list_is_refused_by_claim(
    store: RecordStore, make_record: Callable[..., Record], permit: Permit
) -> None:
    await store.append([make_record()], permit)
    for claim in (store.claim, store.claim_opened):
        with pytest.raises(UsageError, match="scopes"):
            await claim(5, scopes="operation_logs")
    assert len(await store.claim(5, scopes=["operation_logs"])) == 1


@pytest.mark.parametrize("writer", ["thread"])
@pytest.mark.parametrize("n", ["5", None, 2.5, True])
async def test_claim_count_that_is_not_an_int_is_refused(store: RecordStore, n: object) -> None:
    for claim in (store.claim, store.claim_opened):
        with pytest.raises(UsageError, match=r"\bn\b"):
            await claim(n)  # type: ignore[arg-type]


@pytest.mark.parametrize("writer", ["thread"])
async def test_purge_of_a_list_is_a_usage_error_not_a_database_error(store: RecordStore) -> None:
    with pytest.raises(UsageError, match="category"):
        await store.purge(["operation_logs"])  # type: ignore[arg-type]


def test_open_store_with_a_directory_instead_of_paths_names_the_argument(paths: Paths) -> None:
    with pytest.raises(UsageError, match="paths") as caught:
        open_store(str(paths.data_dir))  # type: ignore[arg-type]
    assert "resolve_paths" in (caught.value.remedy or "")
    with pytest.raises(UsageError, match="paths"):
        open_store(paths.data_dir)  # type: ignore[arg-type]


@pytest.mark.parametrize("writer", ["thread"])
async def test_record_ids_of_none_is_refused(store: RecordStore) -> None:
    with pytest.raises(UsageError, match="record_ids"):
        await store.ack(None)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="record_ids"):
        await store.release(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("writer", ["thread"])
@pytest.mark.parametrize("now", ["x", True, float("nan"), float("inf"), [1.0]])
async def test_sweep_of_a_time_that_is_not_a_finite_number_is_refused(
    store: RecordStore, make_record: Callable[..., Record], permit: Permit, now: object
) -> None:
    # "x" was a TypeError from the writer thread; inf deleted every record as expired
    await store.append([make_record()], permit)
    with pytest.raises(UsageError, match="now"):
        await store.sweep(now)  # type: ignore[arg-type]
    assert (await store.stats()).total == 1


@pytest.mark.parametrize("max_batch", [0, -1, "8", 2.5, True, None])
def test_open_store_refuses_a_max_batch_that_is_not_a_positive_int(
    paths: Paths, max_batch: object
) -> None:
    # 0 and negative were accepted (a writer that could not commit a group as documented)
    with pytest.raises(UsageError, match="max_batch"):
        open_store(paths, max_batch=max_batch)  # type: ignore[arg-type]
    assert not (paths.data_dir / DB_FILE).exists()


class _LyingDict(dict):  # type: ignore[type-arg]
    """A body whose membership test hides a key that is there (orjson writes it anyway)."""

    def __contains__(self, key: object) -> bool:
        return False


@pytest.mark.parametrize("writer", ["thread"])
async def test_one_record_instead_of_a_list_is_refused_by_append(
    store: RecordStore, make_record: Callable[..., Record], permit: Permit
) -> None:
    with pytest.raises(UsageError, match="records"):
        await store.append(make_record(), permit)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="records"):
        await store.append("a record", permit)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="Record"):
        await store.append(["x"], permit)  # type: ignore[list-item]
    with pytest.raises(UsageError, match="Record"):
        await store.append([make_record(), {"op": "connect"}], permit)  # type: ignore[list-item]
    assert (await store.stats()).total == 0


@pytest.mark.parametrize("writer", ["thread"])
@pytest.mark.parametrize("offered", [None, "permit", object()])
async def test_something_else_than_a_permit_is_a_foreign_permit(
    store: RecordStore, make_record: Callable[..., Record], offered: object
) -> None:
    with pytest.raises(ForeignPermit):
        await store.append([make_record()], offered)  # type: ignore[arg-type]
    assert (await store.stats()).total == 0


@pytest.mark.parametrize("writer", ["thread"])
@pytest.mark.parametrize("body", [None, ["op", "connect"], "connect", 3])
async def test_a_body_that_is_not_a_dict_is_refused(
    store: RecordStore, permit: Permit, body: object
) -> None:
    record = Record(
        category="operation_logs",
        consent_id=permit.consent_ids["operation_logs"],
        policy_version=permit.policy_version,
        body=body,  # type: ignore[arg-type]
    )
    with pytest.raises(UsageError, match="body"):
        await store.append([record], permit)
    assert (await store.stats()).total == 0


async def test_a_mac_field_a_dict_subclass_hides_still_needs_the_mac_permit(
    store: RecordStore, gate: ConsentGate
) -> None:
    # the data key is chosen by the MAC fields a body holds: a dict subclass that answers "not
    # here" must not get a MAC sealed under the operation_logs key (which a withdrawal of
    # mac_addresses would not shred)
    no_macs = gate.permit(["operation_logs"])
    body = _LyingDict(speaker_mac="C0:57:4B:00:00:01", op="connect")
    record = Record(
        category="operation_logs",
        consent_id=no_macs.consent_ids["operation_logs"],
        policy_version=no_macs.policy_version,
        body=body,
    )
    assert key_scope(record) == "operation_logs+mac_addresses"
    with pytest.raises(ConsentRequired):
        await store.append([record], no_macs)
    assert (await store.stats()).total == 0
