"""`wking upload`, the collector check of `wking doctor` and `data delete --all`, as processes.

The reference receiver runs in the test's event loop on 127.0.0.1; each ``wking`` is a real
subprocess with its own ``WKING_HOME``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING

import orjson

from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.models import Record
from wking_device.receiver import FaultPlan, Receiver
from wking_device.store import open_store

if TYPE_CHECKING:
    from pathlib import Path


async def wking(home: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wking_device",
        "--home",
        str(home),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("WKING_")},
    )
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def fill(home: Path, n: int) -> set[str]:
    paths = resolve_paths(home)
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    gate.grant(["operation_logs"], method="api")
    permit = gate.permit(["operation_logs"])
    records = [
        Record(
            category="operation_logs",
            consent_id=permit.consent_ids["operation_logs"],
            policy_version=permit.policy_version,
            body={"i": i},
        )
        for i in range(n)
    ]
    async with open_store(paths, settings) as store:
        await store.append(records, permit)
    return {r.record_id for r in records}


async def pending(home: Path) -> int:
    paths = resolve_paths(home)
    async with open_store(paths, load_settings(paths), readonly=True) as store:
        return (await store.stats()).pending


async def test_upload_sends_everything_and_prints_json(home: Path, tmp_path: Path) -> None:
    ids = await fill(home, 120)
    async with Receiver(tmp_path / "rx") as rx:
        code, out, err = await wking(
            home, "--json", "upload", "--endpoint", rx.url, "--ca-file", str(rx.ca_file)
        )
        received = {row["record_id"] for row in rx.export()}
    assert code == 0, err
    result = orjson.loads(out)
    assert result["sent"] == 120
    assert result["endpoint"] == rx.endpoint
    assert {"retried", "rejected", "deferred", "bytes"} <= set(result)
    assert received == ids
    assert await pending(home) == 0


async def test_upload_refusals_exit_5_with_one_line_and_lose_nothing(
    home: Path, tmp_path: Path
) -> None:
    await fill(home, 30)
    async with Receiver(tmp_path / "rx") as rx:
        # plaintext: refused before any connection
        code, out, err = await wking(home, "upload", "--endpoint", f"http://127.0.0.1:{rx.port}")
        assert (code, out) == (5, "")
        assert err.count("\n") == 1
        assert err.startswith("error: refusing endpoint")
        assert "not https" in err
        # credentials in the URL: refused, not repeated, and the remedy reads whole (the log
        # redaction once turned "bearer token in a file" into "bearer [TOKEN] a file")
        code, out, err = await wking(
            home, "upload", "--endpoint", f"https://alice:s3cret@127.0.0.1:{rx.port}"
        )
        assert (code, out) == (5, "")
        assert err.count("\n") == 1
        assert "s3cret" not in err
        assert "[TOKEN]" not in err
        assert "token in a file and pass --token-file" in err
        # the receiver's private CA is not a system CA: verification fails, nothing is sent
        code, out, err = await wking(home, "upload", "--endpoint", rx.url)
        assert (code, out) == (5, "")
        assert err.count("\n") == 1
        assert "unknown CA" in err
        # a pin that does not match
        code, _, err = await wking(
            home,
            "upload",
            "--endpoint",
            rx.url,
            "--ca-file",
            str(rx.ca_file),
            "--pin",
            "sha256//" + "B" * 43 + "=",
        )
        assert code == 5
        assert "matches no configured SPKI pin" in err
        assert rx.stats.requests == 0
    assert await pending(home) == 30


async def test_upload_with_nothing_pending_says_it_contacted_nobody(home: Path) -> None:
    # port 9 (discard): nothing listens; with nothing to send there is no connection to fail
    code, out, err = await wking(home, "upload", "--endpoint", "https://127.0.0.1:9")
    assert code == 0, err
    assert "the collector was not contacted" in out
    assert "wking doctor" in out


async def test_upload_without_an_endpoint_is_a_usage_error(home: Path) -> None:
    code, _, err = await wking(home, "upload")
    assert code == 2
    assert "no collector configured" in err


async def test_doctor_checks_the_configured_collector(home: Path, tmp_path: Path) -> None:
    async with Receiver(tmp_path / "rx") as rx:
        config = home / "config" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f'[upload]\nendpoint = "{rx.url}"\nca_bundle = "{rx.ca_file}"\n', encoding="utf-8"
        )
        code, out, err = await wking(home, "--json", "doctor")
        assert code == 0, err
        report = orjson.loads(out)["upload"]
        assert report["http_status"] == 200
        assert report["spki_pin"].startswith("sha256//")
        assert abs(report["clock_skew_s"]) < 5
        assert report["tls_version"] in ("TLSv1.2", "TLSv1.3")
        # the pin doctor printed is the one the collector has
        config.write_text(
            f'[upload]\nendpoint = "{rx.url}"\nca_bundle = "{rx.ca_file}"\n'
            f'spki_pins = ["{report["spki_pin"]}"]\n',
            encoding="utf-8",
        )
        code, out, _ = await wking(home, "--json", "doctor")
        assert code == 0
        assert orjson.loads(out)["upload"]["pinned"] is True
        # without the CA bundle: exit 5, the report still printed
        config.write_text(f'[upload]\nendpoint = "{rx.url}"\n', encoding="utf-8")
        code, out, err = await wking(home, "--json", "doctor")
        assert code == 5
        assert "unknown CA" in orjson.loads(out)["upload"]
        assert rx.stats.stored == 0  # the check sends no record


async def test_full_local_deletion_rotates_the_installation_id(home: Path, tmp_path: Path) -> None:
    await fill(home, 5)
    async with Receiver(tmp_path / "rx") as rx:
        args = ("upload", "--endpoint", rx.url, "--ca-file", str(rx.ca_file))
        assert (await wking(home, *args))[0] == 0
        first = (home / "data" / "installation_id").read_text().strip()
        code, out, err = await wking(home, "--json", "data", "delete", "--all", "--yes")
        assert code == 0, err
        assert orjson.loads(out)["installation_id_rotated"] is True
        assert not (home / "data" / "installation_id").exists()
        await fill(home, 5)
        assert (await wking(home, *args))[0] == 0
        second = (home / "data" / "installation_id").read_text().strip()
        rows = rx.export()
    assert first != second
    assert {row["installation_id"] for row in rows} == {first, second}


SECRET = "s3cr3t-Qm4pW7"


async def test_a_key_in_the_endpoint_query_is_never_shown(home: Path, tmp_path: Path) -> None:
    ids = await fill(home, 10)
    async with Receiver(tmp_path / "rx") as rx:
        url = f"{rx.endpoint}?api_key={SECRET}"
        ca = ("--ca-file", str(rx.ca_file))
        # the records reach the collector; the JSON and the table show the masked URL
        code, out, err = await wking(home, "--json", "upload", "--endpoint", url, *ca)
        assert code == 0, err
        assert orjson.loads(out)["endpoint"] == f"{rx.endpoint}?api_key=[…]"
        assert SECRET not in out + err
        assert {row["record_id"] for row in rx.export()} == ids
        await fill(home, 3)
        code, out, err = await wking(home, "upload", "--endpoint", url, *ca)
        assert code == 0, err
        assert "api_key=" in out
        assert SECRET not in out + err
        # the doctor's check of a configured collector, as JSON and as a table
        config = home / "config" / "config.toml"
        config.write_text(
            f'[upload]\nendpoint = "{url}"\nca_bundle = "{rx.ca_file}"\n', encoding="utf-8"
        )
        for args in (("--json", "doctor"), ("doctor",)):
            code, out, err = await wking(home, *args)
            assert code == 0, err
            assert "api_key=" in out
            assert SECRET not in out + err
    # where records go (data status) and the settings (config show and set)
    for args in (
        ("--json", "data", "status"),
        ("data", "status"),
        ("--json", "config", "show"),
        ("config", "show"),
        ("--json", "config", "set", "upload.endpoint", url),
        ("config", "set", "upload.endpoint", url),
    ):
        code, out, err = await wking(home, *args)
        assert code == 0, (args, err)
        assert "api_key=" in out, args
        assert SECRET not in out + err, args
    # a refused plaintext URL and a collector that refuses the upload (nothing is lost)
    code, out, err = await wking(
        home, "upload", "--endpoint", f"http://127.0.0.1:9/?api_key={SECRET}"
    )
    assert code == 5
    assert "api_key=[…]" in err
    assert SECRET not in out + err
    await fill(home, 4)
    async with Receiver(tmp_path / "rx401", fault_plan=FaultPlan(status={401: 1.0})) as rx:
        url = f"{rx.endpoint}?api_key={SECRET}"
        code, out, err = await wking(
            home, "upload", "--endpoint", url, "--ca-file", str(rx.ca_file)
        )
        assert code == 5
        assert "HTTP 401" in err
        assert SECRET not in out + err
    assert await pending(home) == 4


async def test_the_endpoint_in_the_title_is_text_not_markup(home: Path) -> None:
    # the URL is the caller's: Rich read it as markup (a link dropped from what is shown, a
    # closing tag an "unexpected MarkupError")
    for path in ("[/x]", "[link=http://evil.example]a[/link]"):
        endpoint = f"https://127.0.0.1:9/v1/logs/{path}"
        code, out, err = await wking(home, "upload", "--endpoint", endpoint)
        assert code == 0, err
        assert f"Upload to {endpoint}" in out
