"""The server's TLS context from PEM files (``wsroute._tlsfiles``): files that load,
and for those that do not, a message naming the file and what is wrong with it."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from wsroute._tlsfiles import server_context

from .tlstools import PASSWORD, Certs, certs

__all__ = ["certs"]  # fixture, imported to be found


def test_a_chain_and_its_key_load(certs: Certs) -> None:
    for keyfile, password in [(certs.key, None), (certs.encrypted_key, PASSWORD)]:
        context = server_context(str(certs.cert), str(keyfile), password)
        assert isinstance(context, ssl.SSLContext)
    server_context(str(certs.combined), None, None)  # the key in the certificate's file


def test_an_encrypted_key_without_its_password_is_said_so_not_prompted_for(
    certs: Certs,
) -> None:
    # Without a callable, OpenSSL would read a password from the terminal.
    with pytest.raises(ValueError, match="the private key is encrypted: give its password"):
        server_context(str(certs.cert), str(certs.encrypted_key), None)


def test_a_wrong_password_is_named(certs: Certs) -> None:
    with pytest.raises(ValueError, match=r"the password does not decrypt the private key$"):
        server_context(str(certs.cert), str(certs.encrypted_key), "wrong")


def test_a_certificate_without_its_key_asks_for_the_key_file(certs: Certs) -> None:
    with pytest.raises(ValueError, match=r"cert\.pem holds no private key: name the key's file"):
        server_context(str(certs.cert), None, None)


def test_files_swapped_or_of_the_wrong_kind_are_named(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"key\.pem holds no PEM certificate"):
        server_context(str(certs.key), str(certs.cert), None)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a key\n")
    with pytest.raises(ValueError, match=r"notes\.txt holds no PEM private key"):
        server_context(str(certs.cert), str(notes), None)


def test_a_key_of_another_certificate_keeps_openssls_words(certs: Certs) -> None:
    other = certs.cert.parent / "another-key.pem"
    certs.ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other))
    with pytest.raises(ValueError, match=r"KEY_VALUES_MISMATCH.*check that the key matches"):
        server_context(str(certs.cert), str(other), None)


def test_a_missing_file_is_the_systems_error(certs: Certs) -> None:
    with pytest.raises(ValueError, match=r"nope\.pem: \[Errno 2\] No such file"):
        server_context(str(certs.cert.parent / "nope.pem"), None, None)


def test_a_password_for_a_key_that_is_not_encrypted_is_refused(certs: Certs) -> None:
    # It would have no effect: most likely it belongs to another key.
    unencrypted = r"key\.pem \(WSROUTE_SSL_KEYFILE_PASSWORD or --ssl-keyfile-password\), but"
    with pytest.raises(
        ValueError, match=rf"password was given for the private key in .*{unencrypted}"
    ):
        server_context(str(certs.cert), str(certs.key), PASSWORD)
    with pytest.raises(ValueError, match=r"combined\.pem .*the key is not encrypted: leave"):
        server_context(str(certs.combined), None, PASSWORD)
    server_context(str(certs.cert), str(certs.encrypted_key), PASSWORD)  # needed: no error
