"""The client refuses every peer it cannot verify, and sends nothing to it."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import socket
import ssl
import threading
import warnings
from pathlib import Path

import pytest
import trustme
from _upload_helpers import bare_server, make_body
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from wking_device.errors import (
    CredentialError,
    InsecureEndpoint,
    PinMismatch,
    TLSError,
    TLSReason,
    TLSVerificationFailed,
    UploadError,
)
from wking_device.receiver import Receiver
from wking_device.upload import (
    Delivered,
    OTLPSender,
    TLSOptions,
    build_ssl_context,
    parse_endpoint,
    parse_pin,
    read_token,
    spki_sha256,
)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:4318/v1/logs",
        "HTTP://collector.example",
        "ftp://collector.example/v1/logs",
        "collector.example/v1/logs",
        "https:///v1/logs",
        "https://user:pw@collector.example/v1/logs",
        "https://collector.example:99999/v1/logs",
    ],
)
def test_anything_but_https_is_refused(url: str) -> None:
    with pytest.raises(InsecureEndpoint) as info:
        parse_endpoint(url)
    assert info.value.exit_code == 5
    assert "pw" not in str(info.value)


def test_a_bare_origin_gets_the_otlp_path() -> None:
    endpoint = parse_endpoint("https://collector.example:4318")
    assert endpoint.url == "https://collector.example:4318/v1/logs"
    assert (endpoint.host, endpoint.port) == ("collector.example", 4318)


def test_the_sender_refuses_http_and_contexts_without_verification() -> None:
    context = build_ssl_context()
    with pytest.raises(InsecureEndpoint):
        OTLPSender("http://127.0.0.1:1/v1/logs", ssl_context=context)
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    with pytest.raises(InsecureEndpoint):
        OTLPSender("https://127.0.0.1:1/v1/logs", ssl_context=lax)


def test_the_context_is_strict() -> None:
    context = build_ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


async def test_happy_path_and_a_resend_is_deduplicated(receiver: Receiver) -> None:
    context = build_ssl_context(TLSOptions(ca_file=receiver.ca_file))
    async with OTLPSender(receiver.endpoint, ssl_context=context) as sender:
        assert await sender.send(make_body(5)) == Delivered(status=200)
        assert await sender.send(make_body(5)) == Delivered(status=200)
    rows = receiver.export()
    assert sorted(row["record_id"] for row in rows) == [f"{i:032x}" for i in range(5)]
    assert (receiver.stats.stored, receiver.stats.duplicates) == (5, 5)


async def _expect_tls_error(url: str, ca_file: Path, **options: object) -> UploadError:
    context = build_ssl_context(TLSOptions(ca_file=ca_file, **options))  # type: ignore[arg-type]
    async with OTLPSender(url, ssl_context=context) as sender:
        with pytest.raises(UploadError) as info:
            await sender.send(make_body(1))
    return info.value


async def test_an_unknown_ca_is_refused_and_nothing_is_sent(
    receiver: Receiver, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    error = await _expect_tls_error(receiver.endpoint, other)
    assert isinstance(error, TLSVerificationFailed)
    assert error.reason is TLSReason.UNKNOWN_CA
    assert "unknown CA" in str(error)
    assert error.exit_code == 5
    assert receiver.stats.requests == 0


async def test_a_wrong_host_name_is_refused(tmp_path: Path) -> None:
    async with bare_server(tmp_path, identities=("collector.example",)) as server:
        error = await _expect_tls_error(server.url, server.ca_file)
    assert isinstance(error, TLSVerificationFailed)
    assert error.reason is TLSReason.HOSTNAME_MISMATCH
    assert "not valid for this IP address" in str(error)
    assert server.requests == []


async def test_an_expired_certificate_is_refused(tmp_path: Path) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    async with bare_server(tmp_path, not_after=past) as server:
        error = await _expect_tls_error(server.url, server.ca_file)
    assert isinstance(error, TLSVerificationFailed)
    assert error.reason is TLSReason.EXPIRED
    assert "expired" in str(error)
    assert server.requests == []


def _receiver_pin(receiver: Receiver) -> str:
    pem = (receiver.ca_file.parent / "server.pem").read_bytes()
    der = x509.load_pem_x509_certificates(pem)[0].public_bytes(serialization.Encoding.DER)
    return "sha256//" + base64.b64encode(spki_sha256(der)).decode()


async def test_a_pin_mismatch_is_refused_before_any_byte_is_sent(receiver: Receiver) -> None:
    wrong = "sha256//" + base64.b64encode(b"\x01" * 32).decode()
    error = await _expect_tls_error(receiver.endpoint, receiver.ca_file, pins=(wrong,))
    assert isinstance(error, PinMismatch)
    assert error.reason is TLSReason.PIN_MISMATCH
    assert receiver.stats.requests == 0


async def test_a_matching_pin_among_others_is_accepted(receiver: Receiver) -> None:
    pins = ("AA" * 32, _receiver_pin(receiver))
    context = build_ssl_context(TLSOptions(ca_file=receiver.ca_file, pins=pins))
    async with OTLPSender(receiver.endpoint, ssl_context=context) as sender:
        assert isinstance(await sender.send(make_body(1)), Delivered)


@pytest.mark.parametrize("name", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
async def test_environment_variables_do_not_widen_a_configured_ca(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, str(receiver.ca_file))
    monkeypatch.setenv("SSL_CERT_DIR", str(receiver.ca_file.parent))
    other = tmp_path / "configured-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    error = await _expect_tls_error(receiver.endpoint, other)
    assert isinstance(error, TLSVerificationFailed)
    assert receiver.stats.requests == 0


async def test_without_a_ca_bundle_the_receiver_ca_is_not_trusted(receiver: Receiver) -> None:
    # the conftest clears nothing here: REQUESTS_CA_BUNDLE etc. of this machine are ignored too
    async with OTLPSender(receiver.endpoint, ssl_context=build_ssl_context()) as sender:
        with pytest.raises(TLSVerificationFailed):
            await sender.send(make_body(1))


async def test_mutual_tls_presents_the_client_certificate(tmp_path: Path) -> None:
    client_ca = trustme.CA()
    client = client_ca.issue_cert("wking-client@example")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)
    async with bare_server(tmp_path, require_client_cert=client_ca) as server:
        options = TLSOptions(ca_file=server.ca_file, client_cert=cert_file, client_key=key_file)
        async with OTLPSender(server.url, ssl_context=build_ssl_context(options)) as sender:
            assert isinstance(await sender.send(make_body(1)), Delivered)
    assert len(server.requests) == 1


def test_a_client_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    cert = trustme.CA().issue_cert("client@example")
    cert_file, key_file = tmp_path / "c.pem", tmp_path / "c.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o644)
    with pytest.raises(CredentialError, match="accessible by other users"):
        build_ssl_context(TLSOptions(client_cert=cert_file, client_key=key_file))


def test_an_unreadable_ca_bundle_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(CredentialError, match="cannot load the CA bundle"):
        build_ssl_context(TLSOptions(ca_file=bad))


async def test_the_token_is_sent_as_bearer_and_read_privately(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  s3cr3t-token\n")
    token_file.chmod(0o600)
    token = read_token(token_file)
    assert token == "s3cr3t-token"
    async with bare_server(tmp_path) as server:
        context = build_ssl_context(TLSOptions(ca_file=server.ca_file))
        async with OTLPSender(server.url, ssl_context=context, token=token) as sender:
            await sender.send(make_body(1))
    headers = server.requests[0][0]
    assert headers["Authorization"] == "Bearer s3cr3t-token"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["Content-Encoding"] == "gzip"


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        ("tok\n", 0o644, "accessible by other users"),
        ("tok\n", 0o620, "accessible by other users"),
        ("  \n", 0o600, "empty"),
        ("tok\nInjected: header\n", 0o600, "one line"),
    ],
)
def test_unsafe_token_files_are_refused(
    tmp_path: Path, content: str, mode: int, message: str
) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(CredentialError, match=message):
        read_token(path)


def test_a_missing_token_file_is_a_credential_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialError):
        read_token(tmp_path / "nope")


def test_pins_in_every_form() -> None:
    digest = bytes(range(32))
    b64 = base64.b64encode(digest).decode()
    assert parse_pin(f"sha256//{b64}") == digest
    assert parse_pin(b64) == digest
    assert parse_pin(digest.hex()) == digest
    assert parse_pin(":".join(f"{b:02X}" for b in digest)) == digest
    for bad in ("sha256//short", "zz" * 32, "", base64.b64encode(b"x" * 20).decode()):
        with pytest.raises(CredentialError):
            parse_pin(bad)


@pytest.mark.parametrize("name", ["SSL_CERT_FILE", "SSL_CERT_DIR"])
async def test_environment_variables_do_not_replace_the_system_store(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Without a CA bundle, "the system store" is OpenSSL's compiled-in one: a variable pointing
    # at another CA (the receiver's private one here) must not make the client trust it.
    if name == "SSL_CERT_FILE":
        monkeypatch.setenv(name, str(receiver.ca_file))
    else:
        rehashed = receiver.ca_file.parent / "capath"
        rehashed.mkdir()
        subject_hash = _subject_hash(receiver.ca_file)
        (rehashed / f"{subject_hash}.0").write_bytes(receiver.ca_file.read_bytes())
        monkeypatch.setenv(name, str(rehashed))
    async with OTLPSender(receiver.endpoint, ssl_context=build_ssl_context()) as sender:
        with pytest.raises(TLSVerificationFailed):
            await sender.send(make_body(1))
    assert receiver.stats.requests == 0


def _subject_hash(pem: Path) -> str:
    """OpenSSL's c_rehash name of a CA certificate (``openssl x509 -subject_hash``)."""
    import subprocess  # noqa: PLC0415

    done = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash", "-in", str(pem)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


async def test_proxy_variables_are_never_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a proxy from the environment would see (and could downgrade) the connection: it is ignored
    proxied: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        proxied.append(await reader.read(4096))
        writer.close()

    listener = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    for name in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.setenv(name, proxy_url)
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    try:
        async with bare_server(tmp_path) as server:
            context = build_ssl_context(TLSOptions(ca_file=server.ca_file))
            async with OTLPSender(server.url, ssl_context=context) as sender:
                result = await sender.send(make_body(1))
            assert result == Delivered(status=200)
            assert len(server.requests) == 1
    finally:
        listener.close()
        await listener.wait_closed()
    assert proxied == []


async def test_a_collector_offering_only_tls_1_1_is_refused(tmp_path: Path) -> None:
    # a blocking server socket, so OpenSSL answers the ClientHello with its protocol alert (an
    # asyncio server would just drop the connection)
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this server really offer TLS 1.1
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    handed_over: list[bytes] = []
    server_saw: list[BaseException] = []

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    handed_over.append(tls.recv(4096))  # only after a completed handshake
            except (ssl.SSLError, OSError) as exc:
                server_saw.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    try:
        error = await _expect_tls_error(f"https://127.0.0.1:{port}/v1/logs", ca_file)
    finally:
        await asyncio.to_thread(thread.join, 30)
        listener.close()
    assert isinstance(error, TLSError)
    assert "unsupported protocol" in str(error) or "protocol version" in str(error)
    assert handed_over == []
    assert server_saw  # the handshake failed on the server's side too
