"""The server's TLS context from PEM files (``wsroute run --ssl-*``), and, when they do
not load, which file is wrong and how: OpenSSL says ``[SSL] PEM lib`` for most of it,
naming no file, and asks for an encrypted key's password on the terminal. A password
for a key that is not encrypted is refused too, as the command line refuses the other
TLS options that would have no effect: it was meant for another key."""

from __future__ import annotations

import ssl
from pathlib import Path


class _Encrypted(Exception):
    """The key is encrypted and no password was given."""


def _no_password() -> str:
    # Given instead of no password: OpenSSL would prompt on the terminal, and wait
    # there, or fail with "Invalid argument" where there is none (systemd, Docker).
    raise _Encrypted


def server_context(certfile: str, keyfile: str | None, password: str | None) -> ssl.SSLContext:
    """A server context with ``ssl.create_default_context``'s defaults and ALPN
    ``http/1.1``, holding the chain of ``certfile`` and the key of ``keyfile`` (else of
    ``certfile``).

    Raises:
        ValueError: the files cannot be loaded, or ``password`` is given for a key that
            is not encrypted; the message says which and why.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.set_alpn_protocols(["http/1.1"])
    files = certfile + (f" and {keyfile}" if keyfile else "")
    asked: list[bool] = []  # OpenSSL asks for the password only to decrypt a key

    def give_password() -> str:
        asked.append(True)
        assert password is not None
        return password

    try:
        context.load_cert_chain(
            certfile, keyfile, _no_password if password is None else give_password
        )
    except _Encrypted:
        raise ValueError(
            f"cannot load the TLS certificate and key from {files}: the private key is"
            " encrypted: give its password with WSROUTE_SSL_KEYFILE_PASSWORD (or"
            " --ssl-keyfile-password)"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        why = _why(certfile, keyfile, password, exc)
        raise ValueError(f"cannot load the TLS certificate and key from {files}: {why}") from None
    if password is not None and not asked:
        raise ValueError(
            f"a password was given for the private key in {keyfile or certfile}"
            " (WSROUTE_SSL_KEYFILE_PASSWORD or --ssl-keyfile-password), but the key is not"
            " encrypted: leave the password out, or name the encrypted key with"
            " --ssl-keyfile"
        )
    return context


def _why(certfile: str, keyfile: str | None, password: str | None, exc: Exception) -> str:
    """What is wrong with the files, read from their PEM labels where OpenSSL's error
    does not say."""
    generic = f"{exc} (check that the key matches the certificate, and the key's password)"
    if not isinstance(exc, ssl.SSLError):
        return str(exc)  # no such file, a directory, no permission: the OS says it
    try:
        cert = Path(certfile).read_text(errors="replace")
        key = cert if keyfile is None else Path(keyfile).read_text(errors="replace")
    except OSError:
        return generic
    if "-----BEGIN CERTIFICATE-----" not in cert:
        return f"{certfile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    if "PRIVATE KEY-----" not in key:
        if keyfile is None:
            return f"{certfile} holds no private key: name the key's file with --ssl-keyfile"
        return f"{keyfile} holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
    if password is not None and "ENCRYPTED" in key:
        return "the password does not decrypt the private key"
    return generic
