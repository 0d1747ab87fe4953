"""The documentation site builds with ``mkdocs build --strict``: no broken link, anchor, docstring.

mkdocs.yml turns every warning into an error (``strict: true``, link and anchor validation on), and
mkdocstrings renders the API reference from the docstrings under ``src/``, so a malformed Google
section (griffe's warnings) fails here too. The build must work offline: no web fonts, no plugin
that downloads anything.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("WKING_") and name != "DO_NOT_TRACK"
    }
    env["NO_MKDOCS_2_WARNING"] = "1"  # mkdocs-material's banner about MkDocs 2.0, not ours
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mkdocs build took more than {exc.timeout} s")
    output = proc.stdout + proc.stderr
    if "No module named mkdocs" in output:
        pytest.fail('mkdocs is not installed: pip install -e ".[docs]" (the dev extra has it)')
    warnings = [line for line in output.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert not warnings, "mkdocs build --strict:\n" + "\n".join(warnings)
    assert proc.returncode == 0, "mkdocs build --strict:\n" + output[-3000:]
    return out


def test_every_page_of_docs_is_in_the_site(site: Path) -> None:
    for page in sorted((ROOT / "docs").glob("*.md")):
        name = "index.html" if page.stem == "index" else f"{page.stem}/index.html"
        assert (site / name).is_file(), f"docs/{page.name} was not built"


def test_the_api_reference_lists_the_public_names_and_no_private_one(site: Path) -> None:
    import wking_device  # noqa: PLC0415
    import wking_device.receiver  # noqa: PLC0415
    import wking_device.sim  # noqa: PLC0415
    import wking_device.upload  # noqa: PLC0415

    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'id="(wking_device\.[\w.]+)"', html))
    for module, names in (
        (wking_device, ["Speaker", "discover", "ConsentGate", "RecordStore", "WkingError"]),
        (wking_device.sim, ["SimWorld", "SpeakerSpec"]),
        (wking_device.receiver, ["Receiver", "load_fault_plan"]),
        (wking_device.upload, ["Uploader", "open_uploader", "OTLPSender"]),
    ):
        for name in names:
            assert name in module.__all__, (module.__name__, name)
            assert f"{module.__name__}.{name}" in ids, f"{module.__name__}.{name} not in api"
    private = sorted(i for i in ids if any(part.startswith("_") for part in i.split(".")))
    assert not private, private


def test_the_site_loads_nothing_from_the_network(site: Path) -> None:
    # theme.font: false: no Google Fonts; no analytics; everything the pages load is local
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        loaded = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?:)?//([^"/]+)', html)
        assert not loaded, (page.relative_to(site), loaded)


def test_the_changelog_and_the_benchmark_figures_are_included(site: Path) -> None:
    changelog = (site / "changelog" / "index.html").read_text(encoding="utf-8")
    assert "Unreleased" in changelog
    performance = (site / "performance" / "index.html").read_text(encoding="utf-8")
    assert "discovery.py" in performance
    assert "--8&lt;--" not in changelog + performance
