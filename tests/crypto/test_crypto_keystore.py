from __future__ import annotations

import base64
import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
from typing import TYPE_CHECKING

import keyring
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from keyring.backend import KeyringBackend

from wking_device.config import resolve_paths
from wking_device.crypto import (
    KeyFileBackend,
    MacPseudonymizer,
    Sealer,
    key_dir,
    normalize_mac,
    open_key_store,
    secure_keyring,
)
from wking_device.errors import KeyMissing, KeyStoreError, RecordCorrupt, UsageError, WrongKey

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(name="paths")
def fixture_paths(home: Path):
    paths = resolve_paths(home)
    paths.ensure()
    return paths


def test_key_file_level_is_private_and_secret_is_stable(paths) -> None:
    keys = open_key_store(paths)
    assert keys.level == "key-file"
    secret = keys.secret("ledger-hmac")
    assert len(secret) == 32
    kfile = key_dir(paths) / "master.key"
    assert stat.S_IMODE(kfile.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir(paths).stat().st_mode) == 0o700
    assert stat.S_IMODE((key_dir(paths) / "keystore.json").stat().st_mode) == 0o600
    again = open_key_store(paths, create=False)
    assert again.secret("ledger-hmac") == secret
    assert again.secret("other") != secret


def test_secret_survives_rotation(paths) -> None:
    keys = open_key_store(paths)
    secret = keys.secret("ledger-hmac")
    dek = keys.current_data_key("operation_logs", rotate_after=1e9)
    before = keys.master_key_id
    keys.rotate_master_key()
    assert keys.master_key_id != before
    reopened = open_key_store(paths, create=False)
    assert reopened.secret("ledger-hmac") == secret
    assert reopened.data_key(dek.key_id) == dek


def test_missing_store_and_missing_key_are_errors(paths) -> None:
    with pytest.raises(KeyMissing):
        open_key_store(paths, create=False)
    open_key_store(paths).secret("x")
    (key_dir(paths) / "master.key").unlink()
    with pytest.raises(KeyMissing) as info:
        open_key_store(paths)
    assert info.value.exit_code == 6


def test_wrong_key_is_refused(paths) -> None:
    open_key_store(paths).secret("x")
    kfile = key_dir(paths) / "master.key"
    kfile.write_bytes(b"\x01" * 32)
    with pytest.raises(WrongKey):
        open_key_store(paths)


def test_world_readable_key_file_is_refused(paths) -> None:
    open_key_store(paths)
    (key_dir(paths) / "master.key").chmod(0o644)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        open_key_store(paths)


def test_dek_epochs_rotate_on_schedule(paths) -> None:
    keys = open_key_store(paths)
    first = keys.current_data_key("operation_logs", rotate_after=100, now=1000)
    assert keys.current_data_key("operation_logs", rotate_after=100, now=1099) == first
    second = keys.current_data_key("operation_logs", rotate_after=100, now=1100)
    assert second.epoch == first.epoch + 1
    assert second.key != first.key
    assert keys.data_key_ids("operation_logs") == {
        first.key_id: "operation_logs",
        second.key_id: "operation_logs",
    }


def test_destroy_retires_old_kek_for_external_key(paths, tmp_path: Path) -> None:
    external = KeyFileBackend(tmp_path / "external" / "kek")
    keys = open_key_store(paths, backend=external)
    doomed = keys.current_data_key("mac_addresses", rotate_after=1e9)
    kept = keys.current_data_key("operation_logs", rotate_after=1e9)
    old_doc = json.loads((key_dir(paths) / "keystore.json").read_text())
    assert keys.destroy_data_keys(category="mac_addresses") == [doomed.key_id]
    assert keys.data_key(doomed.key_id) is None
    assert keys.destroy_data_keys(category="mac_addresses") == []
    # the live store keeps the surviving key
    again = open_key_store(paths, create=False, backend=external)
    assert again.data_key(kept.key_id) == kept
    # the old copy of the key store does not open with the KEK now in force
    kek = external.load()
    assert kek is not None
    entry = next(e for e in old_doc["deks"] if e["id"] == doomed.key_id)
    blob = base64.b64decode(entry["wrapped"])
    with pytest.raises(InvalidTag):
        AESGCM(kek).decrypt(blob[:12], blob[12:], None)


def test_interrupted_rotation_is_finished_on_open(paths, tmp_path: Path) -> None:
    class Failing(KeyFileBackend):
        fail = False

        def save(self, kek: bytes) -> None:
            if self.fail:
                raise OSError("boom")
            super().save(kek)

    backend = Failing(tmp_path / "ext" / "kek")
    keys = open_key_store(paths, backend=backend)
    secret = keys.secret("ledger-hmac")
    old_kek = backend.load()
    backend.fail = True
    with pytest.raises(OSError, match="boom"):
        keys.rotate_master_key()
    doc = json.loads((key_dir(paths) / "keystore.json").read_text())
    assert doc["pending"] is not None
    backend.fail = False
    reopened = open_key_store(paths, create=False, backend=backend)
    assert reopened.secret("ledger-hmac") == secret
    assert backend.load() != old_kek  # the old KEK was retired after all
    doc = json.loads((key_dir(paths) / "keystore.json").read_text())
    assert doc["pending"] is None


def test_systemd_credential_level(paths, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "wking-kek").write_bytes(b"c" * 32)
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    keys = open_key_store(paths, environ=env)
    assert keys.level == "systemd-credential"
    secret = keys.secret("ledger-hmac")
    assert not (key_dir(paths) / "master.key").exists()
    keys.rotate_master_key()
    assert open_key_store(paths, environ=env).secret("ledger-hmac") == secret
    with pytest.raises(KeyMissing):
        open_key_store(paths, environ={})
    (creds / "wking-kek").write_bytes(b"d" * 32)
    with pytest.raises(WrongKey):
        open_key_store(paths, environ=env)


def test_sealer_round_trip_and_binding() -> None:
    sealer = Sealer(7, b"k" * 32)
    sealer.set_block(0, prefix=b"\0\0\0\1")
    times = {"created_at": 1000.0, "expires_at": 2000.0}
    sealed = sealer.seal("r1", "operation_logs", b"hello", **times)
    assert sealer.open("r1", "operation_logs", sealed, **times) == b"hello"
    with pytest.raises(RecordCorrupt):
        sealer.open("r2", "operation_logs", sealed, **times)
    with pytest.raises(RecordCorrupt):
        sealer.open("r1", "device_info", sealed, **times)
    with pytest.raises(RecordCorrupt):
        Sealer(8, b"k" * 32).open("r1", "operation_logs", sealed, **times)
    # the times are bound too (issue 7): a later expiry or another creation time fails
    with pytest.raises(RecordCorrupt):
        sealer.open("r1", "operation_logs", sealed, created_at=1000.0, expires_at=9e9)
    with pytest.raises(RecordCorrupt):
        sealer.open("r1", "operation_logs", sealed, created_at=999.0, expires_at=2000.0)
    # a row edited to hold text where a number belongs is corrupt, not a crash
    with pytest.raises(RecordCorrupt):
        sealer.open("r1", "operation_logs", sealed, created_at="x", expires_at=2000.0)  # type: ignore[arg-type]
    # an id cannot absorb the category (fields are length-prefixed, not joined with "|")
    with pytest.raises(RecordCorrupt):
        sealer.open("r1|operation_logs", "", sealed, **times)
    other = sealer.seal("r1", "operation_logs", b"hello", **times)
    assert other[1:13] != sealed[1:13]  # counter nonce advanced
    sealer.set_block(5, prefix=b"abcd")
    for _ in range(3):
        sealer.seal("r", "c", b"", **times)
    assert sealer.remaining() == (1 << 20) - 3


def test_sealer_refuses_without_block() -> None:
    with pytest.raises(UsageError):
        Sealer(1, b"k" * 32).seal("r", "c", b"x", created_at=0.0, expires_at=1.0)


def test_mac_pseudonyms_are_keyed_and_rotate(paths) -> None:
    keys = open_key_store(paths)
    now = [0.0]
    pseudo = MacPseudonymizer(keys, epoch_seconds=100, clock=lambda: now[0])
    a = pseudo.pseudonym("aa:bb:cc:dd:ee:ff")
    assert a == pseudo.pseudonym("AA-BB-CC-DD-EE-FF")
    assert a.startswith("mac:")
    assert "aabbccddeeff" not in a.lower()
    assert a != pseudo.pseudonym("aa:bb:cc:dd:ee:fe")
    now[0] = 150.0
    b = pseudo.pseudonym("aa:bb:cc:dd:ee:ff")
    assert b != a
    assert keys.secret_names() == ["mac-pseudonym:1"]
    assert normalize_mac("aabb.ccdd.eeff") == "AABBCCDDEEFF"
    with pytest.raises(UsageError):
        normalize_mac("not a mac")


def _memory_keyring_class(name: str) -> type:
    """Define an in-memory keyring backend (stands in for a secure OS keyring).

    Defined only after keyring chose its default backend: keyring registers every subclass of
    KeyringBackend as a candidate, and a module-level class would become the default keyring of
    the whole test session.
    """
    keyring.get_keyring()  # fix the session's default first

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)

    return type(
        name,
        (KeyringBackend,),
        {
            "priority": 1,
            "entries": None,
            "get_password": get_password,
            "set_password": set_password,
            "delete_password": delete_password,
        },
    )


@pytest.fixture(name="memory_keyring")
def fixture_memory_keyring():
    previous = keyring.get_keyring()
    backend = _memory_keyring_class("MemoryKeyring")()
    backend.entries = {}
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_keyring_level_rotates_the_entry(paths, memory_keyring) -> None:
    keys = open_key_store(paths)
    assert keys.level == "keyring"
    assert not (key_dir(paths) / "master.key").exists()
    secret = keys.secret("ledger-hmac")
    dek = keys.current_data_key("device_info", rotate_after=1e9)
    (entry,) = memory_keyring.entries.values()
    old_doc = json.loads((key_dir(paths) / "keystore.json").read_text())
    keys.destroy_data_keys(category="device_info")
    (rotated,) = memory_keyring.entries.values()
    assert rotated != entry
    again = open_key_store(paths, create=False)
    assert again.secret("ledger-hmac") == secret
    assert again.data_key(dek.key_id) is None
    kek = base64.b64decode(rotated)
    wrapped = base64.b64decode(old_doc["deks"][0]["wrapped"])
    with pytest.raises(InvalidTag):
        AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], None)
    memory_keyring.entries.clear()
    with pytest.raises(KeyMissing):
        open_key_store(paths)


def test_a_keyring_that_drops_the_new_master_key_loses_nothing(paths) -> None:
    def set_password(self, service: str, username: str, password: str) -> None:
        if not self.drop:  # else it reports success and keeps the old entry
            self.entries[(service, username)] = password

    previous = keyring.get_keyring()
    lying = type("LyingKeyring", (_memory_keyring_class("HonestKeyring"),), {})()
    type(lying).set_password = set_password
    lying.entries, lying.drop = {}, False
    keyring.set_keyring(lying)
    try:
        keys = open_key_store(paths)
        assert keys.level == "keyring"
        secret = keys.secret("ledger-hmac")
        kept = keys.current_data_key("operation_logs", rotate_after=1e9)
        keys.current_data_key("device_info", rotate_after=1e9)
        lying.drop = True
        with pytest.raises(KeyStoreError, match="did not keep"):
            keys.destroy_data_keys(category="device_info")
        lying.drop = False
        # the old master key is still in force: nothing is lost, and the next open retires it
        reopened = open_key_store(paths, create=False)
        assert reopened.secret("ledger-hmac") == secret
        assert reopened.data_key(kept.key_id) == kept
    finally:
        keyring.set_keyring(previous)


def test_an_open_during_a_rotation_in_another_process_is_not_a_wrong_key(paths) -> None:
    keys = open_key_store(paths)
    secret = keys.secret("ledger-hmac")
    rotate = (
        "import sys\n"
        "from wking_device.config import resolve_paths\n"
        "from wking_device.crypto import open_key_store\n"
        "open_key_store(resolve_paths(sys.argv[1]), create=False).rotate_master_key()\n"
    )

    class Slow(KeyFileBackend):
        """A key location slow to answer (a keyring over D-Bus): another process rotates."""

        raced = False

        def load(self) -> bytes | None:
            if not self.raced:
                self.raced = True
                subprocess.run(
                    [sys.executable, "-c", rotate, str(paths.home)], check=True, timeout=60
                )
            return super().load()

    reopened = open_key_store(paths, create=False, backend=Slow(key_dir(paths) / "master.key"))
    assert reopened.secret("ledger-hmac") == secret


_OPEN = (
    "import sys\n"
    "from wking_device.config import resolve_paths\n"
    "from wking_device.crypto import KeyFileBackend, key_dir, open_key_store\n"
    "paths = resolve_paths(sys.argv[1])\n"
    "keys = open_key_store(paths, create=False)\n"
)
_ROTATE = _OPEN + "keys.rotate_master_key()\n"
_NEW_KEY = _OPEN + (
    "dek = keys.current_data_key('operation_logs', rotate_after=1e9)\n"
    "print(dek.key_id, dek.key.hex())\n"
)
_CRASH_BETWEEN_STEPS_2_AND_3 = _OPEN + (
    "import os, signal\n"
    "class Killed(KeyFileBackend):\n"
    "    def save(self, kek):\n"
    "        super().save(kek)\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "open_key_store(paths, create=False, backend=Killed(key_dir(paths) / 'master.key'))"
    ".rotate_master_key()\n"
)


def _run(script: str, paths) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, str(paths.home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _rotation_killed_between_steps_2_and_3(paths) -> None:
    """Another process rotates the master key and is killed once the key location took the new
    key: the file holds the old sections and the ``pending`` copy that is in force."""
    done = subprocess.run(
        [sys.executable, "-c", _CRASH_BETWEEN_STEPS_2_AND_3, str(paths.home)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert json.loads((key_dir(paths) / "keystore.json").read_text())["pending"] is not None


def _lock_is_free(paths) -> bool:
    fd = os.open(key_dir(paths) / "keystore.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases the lock when it was taken
    return True


class _RacingKeyFile(KeyFileBackend):
    """A key location slow to answer (a keyring over D-Bus): once armed, another process runs
    ``script`` while this one waits for the key, as soon as the key store lock lets it (a
    process that holds the lock waits for no one, so neither does this stand-in)."""

    def __init__(self, paths, script: str) -> None:
        super().__init__(key_dir(paths) / "master.key")
        self.paths, self.script = paths, script
        self.armed = False
        self.output: str | None = None

    def load(self) -> bytes | None:
        if self.armed and _lock_is_free(self.paths):
            self.armed = False
            self.output = _run(self.script, self.paths)
        return super().load()


@pytest.mark.parametrize("caller", ["data_key", "was_destroyed"])
def test_a_key_looked_up_during_a_rotation_in_another_process_is_not_a_wrong_key(
    paths, caller: str
) -> None:
    open_key_store(paths).secret("ledger-hmac")
    racing = _RacingKeyFile(paths, _ROTATE)
    keys = open_key_store(paths, create=False, backend=racing)
    other = open_key_store(paths, create=False)
    dek = other.current_data_key("device_info", rotate_after=1e9)
    gone = other.current_data_key("diagnostics", rotate_after=1e9)
    other.destroy_data_keys(category="diagnostics")  # a rotation: keys' master key is stale
    # keys reads the file, then the key location; a third process rotates in between
    racing.armed = True
    if caller == "data_key":
        assert keys.data_key(dek.key_id) == dek
    else:
        assert keys.was_destroyed(gone.key_id)
    assert racing.output is not None  # the race did happen
    assert keys.master_key_id == open_key_store(paths, create=False).master_key_id


@pytest.mark.parametrize("entry", ["open", "data_key"])
def test_finishing_a_rotation_never_overwrites_a_newer_key_store_file(paths, entry: str) -> None:
    """A rotation killed between steps 2 and 3 is finished by whoever comes next; a process that
    read the file before another one finished it and went on must not write its older copy over
    the newer file (here: losing a data key the other process made and sealed records with)."""
    keys = open_key_store(paths)
    keys.secret("ledger-hmac")
    racing = _RacingKeyFile(paths, _NEW_KEY)
    if entry == "open":
        _rotation_killed_between_steps_2_and_3(paths)
        racing.armed = True
        opened = open_key_store(paths, create=False, backend=racing)
        seen = None
    else:
        opened = open_key_store(paths, create=False, backend=racing)
        other = open_key_store(paths, create=False)
        other.rotate_master_key()  # opened's master key is stale
        seen = other.current_data_key("device_info", rotate_after=1e9)
        _rotation_killed_between_steps_2_and_3(paths)
        racing.armed = True
        assert opened.data_key(seen.key_id) == seen
    assert racing.output is not None  # the other process finished the rotation and went on
    key_id, key = racing.output.split()
    reopened = open_key_store(paths, create=False)
    dek = reopened.data_key(int(key_id))
    assert dek is not None, "a data key another process created (and sealed records with) is lost"
    assert dek.key.hex() == key
    assert opened.data_key(int(key_id)) == dek
    assert opened.secret("ledger-hmac") == reopened.secret("ledger-hmac")


def test_a_key_location_failing_after_it_kept_the_new_key_loses_no_data_key(paths) -> None:
    """A keyring that stores the new master key and then reports an error: the rotation is in
    force (the key location has only the new key), so data keys made afterwards must be in the
    sections the next open goes by."""

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password
        if self.fail_after_storing:
            raise OSError("D-Bus: no reply")

    previous = keyring.get_keyring()
    flaky = type("FlakyKeyring", (_memory_keyring_class("StoringKeyring"),), {})()
    type(flaky).set_password = set_password
    flaky.entries, flaky.fail_after_storing = {}, False
    keyring.set_keyring(flaky)
    try:
        keys = open_key_store(paths)
        assert keys.level == "keyring"
        secret = keys.secret("ledger-hmac")
        before = keys.current_data_key("operation_logs", rotate_after=1e9)
        flaky.fail_after_storing = True
        with pytest.raises(KeyStoreError, match="keyring failed"):
            keys.rotate_master_key()
        flaky.fail_after_storing = False
        after = keys.current_data_key("device_info", rotate_after=1e9)
        reopened = open_key_store(paths, create=False)
        assert reopened.data_key(after.key_id) == after, "a data key made after the failure is lost"
        assert reopened.data_key(before.key_id) == before
        assert reopened.secret("ledger-hmac") == secret
    finally:
        keyring.set_keyring(previous)


def test_a_process_open_before_a_killed_rotation_loses_no_data_key(paths) -> None:
    """Another process's rotation was killed once the key location took the new key: a process
    that opened before, and still holds the old key, adds a data key; the next open promotes the
    ``pending`` copy, which must hold it."""
    keys = open_key_store(paths)
    secret = keys.secret("ledger-hmac")
    _rotation_killed_between_steps_2_and_3(paths)
    dek = keys.current_data_key("device_info", rotate_after=1e9)
    reopened = open_key_store(paths, create=False)
    assert reopened.data_key(dek.key_id) == dek, "a data key made beside a pending rotation is lost"
    assert reopened.secret("ledger-hmac") == secret


def test_insecure_keyrings_are_skipped(paths) -> None:
    previous = keyring.get_keyring()
    try:
        plaintext = _memory_keyring_class("PlaintextKeyring")()
        plaintext.entries = {}
        keyring.set_keyring(plaintext)
        assert secure_keyring() is None
        assert open_key_store(paths).level == "key-file"
    finally:
        keyring.set_keyring(previous)
    assert secure_keyring() is None  # the machine's default here is keyring.backends.fail


def test_two_openers_see_each_others_rotation(paths) -> None:
    first = open_key_store(paths)
    second = open_key_store(paths, create=False)
    secret = first.secret("ledger-hmac")
    dek = first.current_data_key("diagnostics", rotate_after=1e9)
    second.rotate_master_key()
    # the first opener's KEK is stale now: its next change picks up the new one
    other = first.current_data_key("device_info", rotate_after=1e9)
    assert second.data_key(other.key_id) == other
    assert second.secret("ledger-hmac") == secret
    assert first.data_key(dek.key_id) == dek
    assert open_key_store(paths, create=False).master_key_id == second.master_key_id


_CORRUPTIONS = {
    "wrapped key not base64": lambda d: d["deks"][0].__setitem__("wrapped", "!!!notb64"),
    "wrapped key too short": lambda d: d["deks"][0].__setitem__("wrapped", "AAAA"),
    "wrapped secret too short": lambda d: d["secrets"].__setitem__("s", "AAAA"),
    "data key without its key": lambda d: d["deks"][0].pop("wrapped"),
    "data keys not a list": lambda d: d.__setitem__("deks", "x"),
    "secrets not a mapping": lambda d: d.__setitem__("secrets", []),
    "kek id not a string": lambda d: d.__setitem__("kek_id", 5),
    "pending section garbage": lambda d: d.__setitem__("pending", {"x": 1}),
    "tombstones garbage": lambda d: d.__setitem__("destroyed", "abc"),
}


@pytest.mark.parametrize("corrupt", list(_CORRUPTIONS), ids=list(_CORRUPTIONS))
def test_a_corrupted_key_store_file_is_a_key_store_error(paths, corrupt: str) -> None:
    store = open_key_store(paths)
    store.secret("s")
    dek = store.current_data_key("device_info", rotate_after=1e9)
    path = key_dir(paths) / "keystore.json"
    doc = json.loads(path.read_text())
    _CORRUPTIONS[corrupt](doc)
    path.write_text(json.dumps(doc))

    def use() -> None:
        reopened = open_key_store(paths, create=False)
        reopened.secret("s")
        reopened.data_key(dek.key_id)

    with pytest.raises(KeyStoreError) as info:
        use()
    assert info.value.exit_code == 6
    assert "corrupt" in info.value.message or "does not" in info.value.message


def test_the_cli_reports_a_corrupted_key_store_with_exit_6(paths) -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from wking_device.cli import cli  # noqa: PLC0415

    runner = CliRunner()
    granted = runner.invoke(cli, ["consent", "grant", "--yes", "device_info"])
    assert granted.exit_code == 0, granted.output
    path = key_dir(paths) / "keystore.json"
    doc = json.loads(path.read_text())
    doc["secrets"] = dict.fromkeys(doc["secrets"], "AAAA")
    path.write_text(json.dumps(doc))
    result = runner.invoke(cli, ["consent", "status"], catch_exceptions=False)
    assert result.exit_code == 6
    assert "corrupt" in result.stderr
