"""Certificates for the TLS tests, made by ``trustme``: a private CA, a certificate
for 127.0.0.1 and localhost signed by it, the files ``wsroute run --ssl-*`` reads, and
contexts for servers and clients that trust only that CA."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

#: The password of ``Certs.encrypted_key``.
PASSWORD = "correct horse"


@dataclass(frozen=True)
class Certs:
    ca: trustme.CA
    cert: Path  # the certificate chain, PEM
    key: Path  # its private key, PEM, unencrypted
    encrypted_key: Path  # the same key, encrypted with PASSWORD
    combined: Path  # key and chain in one file

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.combined)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certs]:
    directory = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = directory / "cert.pem", directory / "key.pem"
    encrypted, combined = directory / "key-encrypted.pem", directory / "combined.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    issued.private_key_and_cert_chain_pem.write_to_path(str(combined))
    private = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
    encrypted.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )
    yield Certs(ca, cert, key, encrypted, combined)
