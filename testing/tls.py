"""A throwaway certificate authority for local HTTPS fakes (Duo, YubiCloud).

Real client libraries verify TLS, and some of them (duo_universal) pin their own CA
bundle, so a fake provider on 127.0.0.1 needs a certificate the client can be told to
trust. :class:`LocalCA` makes one at run time with ``trustme``: nothing private is ever
committed, and every run gets fresh keys.

The certificates are strict-mode clean (docs/protocols.md §1.10): trustme gives the CA
``basicConstraints=critical,CA:TRUE``, a critical ``keyUsage`` with ``keyCertSign`` and a
subject key identifier, and the leaf ``CA:FALSE``, ``extendedKeyUsage=serverAuth``, the
subjectAltName and an authority key identifier, so urllib3 2.x on Python 3.13+ (which
turns on ``VERIFY_X509_STRICT``) accepts them.

Usage::

    with LocalCA() as ca:
        server_socket = ca.server_context().wrap_socket(sock, server_side=True)
        requests.get(url, verify=str(ca.ca_path))
"""

from __future__ import annotations

import shutil
import ssl
import sys
import tempfile
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

__all__ = ["LocalCA"]

DEFAULT_IDENTITIES = ("127.0.0.1", "localhost")


class LocalCA:
    """A test CA and one server certificate for ``identities`` (IP or DNS names).

    :param identities: the names the server certificate covers (its subjectAltName).
    :param directory: where to write ``ca.pem``; a private temporary folder (removed by
        :meth:`close`) when ``None``.
    """

    def __init__(self, identities: tuple[str, ...] = DEFAULT_IDENTITIES, *, directory: str | Path | None = None) -> None:
        self._owned_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="secmod-ca-") if directory is None else directory)
        self.identities = tuple(identities)
        self._ca = trustme.CA(organization_name="secmod test CA (not for production)")
        self._leaf = self._ca.issue_cert(*self.identities)
        self.ca_path = self.directory / "ca.pem"
        # Only the public CA certificate goes to disk: clients need a file path
        # (duo_certs, ca_certs_bundle_path); the private keys stay in memory.
        self._ca.cert_pem.write_to_path(str(self.ca_path))

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the certificate for :attr:`identities`."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._leaf.configure_cert(context)
        return context

    def client_context(self, *, strict: bool = True) -> ssl.SSLContext:
        """A client context trusting only this CA; ``strict`` adds ``VERIFY_X509_STRICT``."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        if strict:
            context.verify_flags |= ssl.VERIFY_X509_STRICT
        return context

    def close(self) -> None:
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalCA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server for the fake providers, speaking TLS when given a context.

    The owner sets ``fake`` (with an ``errors`` list) and overrides :meth:`tls_context`.
    """

    daemon_threads = True
    fake: Any

    def tls_context(self) -> ssl.SSLContext | None:
        return None

    def finish_request(self, request: Any, client_address: Any) -> None:
        context = self.tls_context()
        if context is None:
            return super().finish_request(request, client_address)
        # The TLS handshake happens here, in the connection's own thread: a client that
        # connects and stalls cannot block the accept loop.
        try:
            tls = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return None
        try:
            # typeshed types the handler's server argument as Self, which a subclass
            # method cannot name; it is this server.
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
        finally:
            try:
                tls.close()
            except OSError:
                pass
        return None

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-answer are normal (timeouts); anything else is a bug
        # in the fake that a test should see.
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | ssl.SSLError | TimeoutError):
            self.fake.errors.append(repr(error))
