"""A fake YubiCloud: a Yubico OTP validation server (protocol 2.0) on 127.0.0.1.

It behaves like Yubico's reference server, yubikey-val (``ykval-verify.php``), step by
step as docs/protocols.md §2.6 (shared) describes: early errors signed with an *empty*
HMAC key and without otp/nonce, the request signature checked with the client's API
key, the OTP decrypted with the AES key it holds (:mod:`secmod_yubikey.testing.soft_yubikey`),
REPLAYED_REQUEST and REPLAYED_OTP by the stored counters and nonce, and every answer
signed over its sorted fields. The YubiKey module is tested through the real
``yubico_client.Yubico`` against it, never by patching the library.

Switches (plain attributes, change them any time)::

    fake.force_status = None | "BAD_OTP" | "REPLAYED_OTP" | "BACKEND_ERROR" | ...
    fake.bad_signature = True      # answers carry a wrong h
    fake.wrong_echo = True         # answers echo another nonce (a replayed response)
    fake.omit_nonce = True         # answers echo no nonce at all (signed with the key)
    fake.forge_unsigned = "BAD_OTP"  # every answer is this status, signed with the empty
                                     # key as ykval's early errors are (anyone can forge it)
    fake.delay = 2.5               # seconds before answering (slow)
    fake.down = True               # close every connection without an answer
    fake.http_status = 503         # answer this HTTP status with an empty body

Several instances given one :class:`KeyStore` behave like synchronised ykval
servers: an OTP accepted by one is a replay for the others. For "no server at all",
:meth:`FakeYubiCloud.stop` it and its port refuses connections.

Try the YubiKey module without a YubiCloud account::

    python -m secmod_yubikey.testing.yubicloud_fake --port 8080

prints a soft key's OTPs and a ``[modules.yubikey]`` table for ``secmod.toml``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .soft_yubikey import DVORAK, MODHEX, SoftYubiKey, TokenError, decode_otp
from secmod.testing.tls import LoopbackServer

__all__ = ["STATUSES", "FakeYubiCloud", "KeyStore", "sign"]

VERIFY_PATH = "/wsapi/2.0/verify"
STATUSES = frozenset(
    {
        "OK", "BAD_OTP", "REPLAYED_OTP", "REPLAYED_REQUEST", "BAD_SIGNATURE", "MISSING_PARAMETER",
        "NO_SUCH_CLIENT", "OPERATION_NOT_ALLOWED", "BACKEND_ERROR", "NOT_ENOUGH_ANSWERS",
    }
)
# ykval answers these before it has looked the client up: signed with an empty key.
_EARLY = frozenset({"MISSING_PARAMETER", "NO_SUCH_CLIENT"})
_WITH_ECHO = frozenset({"OK", "REPLAYED_OTP", "REPLAYED_REQUEST", "NOT_ENOUGH_ANSWERS"})
_OTP_RE = re.compile(r"^[cbdefghijklnrtuv]{32,48}$")
_NONCE_RE = re.compile(r"^[A-Za-z0-9]{16,40}$")
_FROM_DVORAK = str.maketrans(DVORAK, MODHEX)


def sign(fields: Mapping[str, str], key: bytes) -> str:
    """Protocol 2.0 signature: HMAC-SHA1 over the sorted ``k=v`` pairs except ``h``."""
    message = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "h")
    return base64.b64encode(hmac.new(key, message.encode(), hashlib.sha1).digest()).decode()


@dataclass
class _Key:
    aes_key: bytes = field(repr=False)
    private_id: bytes = field(repr=False)
    active: bool = True
    counters: tuple[int, int] | None = None
    nonce: str = ""


class KeyStore:
    """The YubiKeys a validation server knows, with their last counters and nonce.

    Share one store between several :class:`FakeYubiCloud` to model servers that sync.
    """

    def __init__(self) -> None:
        self._keys: dict[str, _Key] = {}
        self.lock = threading.Lock()

    def add(self, key: SoftYubiKey) -> SoftYubiKey:
        """Know ``key`` (as if uploaded to YubiCloud); returns it for chaining."""
        with self.lock:
            self._keys[key.public_id] = _Key(aes_key=key.aes_key, private_id=key.private_id)
        return key

    def deactivate(self, public_id: str) -> None:
        with self.lock:
            self._keys[public_id].active = False

    def get(self, public_id: str) -> _Key | None:
        return self._keys.get(public_id)

    def counters(self, public_id: str) -> tuple[int, int] | None:
        with self.lock:
            return self._keys[public_id].counters


class _Server(LoopbackServer):
    fake: FakeYubiCloud

    def tls_context(self) -> ssl.SSLContext | None:
        return self.fake.ssl_context


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line carries the OTP: never print it

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self._serve(parts.path, parts.query)

    def do_POST(self) -> None:  # ykval takes the same fields as a form, too
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(urlsplit(self.path).path, self.rfile.read(length).decode("latin-1"))

    def _serve(self, path: str, query: str) -> None:
        fake = self.server.fake
        with fake.lock:
            fake.hits += 1
        if fake.down:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fake.delay:
            fake._stopping.wait(fake.delay)
        if fake.http_status is not None:
            self._send(fake.http_status, b"")
            return
        if path != VERIFY_PATH:
            self._send(404, b"")
            return
        params = dict(parse_qsl(query, keep_blank_values=True))
        self._send(200, fake.answer(params).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeYubiCloud:
    """One validation server on ``127.0.0.1`` (an ephemeral port), in a background thread.

    :param clients: API clients it knows, ``{client_id: raw API key bytes}``; one
        random client is made when ``None`` (see :attr:`client_id`, :attr:`api_key`).
    :param store: the YubiKeys it knows; share one between instances to sync them.
    :param ssl_context: serve HTTPS with this server context
        (:meth:`secmod.testing.tls.LocalCA.server_context`); plain HTTP when ``None``.
    """

    def __init__(
        self,
        clients: Mapping[str, bytes] | None = None,
        *,
        store: KeyStore | None = None,
        ssl_context: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> None:
        if clients is None:
            clients = {str(secrets.randbelow(89999) + 10000): secrets.token_bytes(20)}
        self.clients = {str(k): bytes(v) for k, v in clients.items()}
        self.store = store if store is not None else KeyStore()
        self.ssl_context = ssl_context
        self.force_status: str | None = None
        self.bad_signature = False
        self.wrong_echo = False
        self.omit_nonce = False
        self.forge_unsigned: str | None = None
        self.delay = 0.0
        self.down = False
        self.http_status: int | None = None
        self.hits = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.fake = self
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"FakeYubiCloud(url={self.url!r}, clients={sorted(self.clients)!r})"

    # -- what a test needs to configure the client ---------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{VERIFY_PATH}"

    @property
    def client_id(self) -> str:
        return next(iter(self.clients))

    @property
    def api_key(self) -> str:
        """The first client's API key, base64 as YubiCloud shows it."""
        return base64.b64encode(self.clients[self.client_id]).decode()

    def new_key(self, **kwargs: Any) -> SoftYubiKey:
        """A fresh software YubiKey that this server knows."""
        return self.store.add(SoftYubiKey(**kwargs))

    def settings(self, **extra: Any) -> dict[str, Any]:
        """A ``[modules.yubikey]`` table pointing at this server (fast timeouts)."""
        return {
            "client_id": self.client_id, "secret_key": self.api_key, "api_urls": [self.url],
            "timeout": 2, "max_retries": 1, "retry_delay": 0.0, **extra,
        }

    # -- the protocol -----------------------------------------------------------------

    def answer(self, params: Mapping[str, str]) -> str:
        """The response body for one request's parameters (ykval-verify.php's steps)."""
        # 1. Lowercase; an OTP typed on a Dvorak layout is mapped back to modhex.
        otp = params.get("otp", "").lower()
        if otp and all(c in DVORAK for c in otp):
            otp = otp.translate(_FROM_DVORAK)
        nonce = params.get("nonce")
        if self.forge_unsigned is not None:
            return self._reply(self.forge_unsigned, b"")
        # 2-6. Parameter checks, answered before the client is known: empty-key signed.
        if nonce is None:
            return self._reply("MISSING_PARAMETER", b"")
        sl = params.get("sl")
        if sl is not None and sl not in {"fast", "secure"} and not (sl.isdigit() and int(sl) >= 1):
            return self._reply("MISSING_PARAMETER", b"")
        if "timeout" in params and not params["timeout"].isdigit():
            return self._reply("MISSING_PARAMETER", b"")
        if not _OTP_RE.match(otp):
            return self._reply("BAD_OTP", b"")
        client_id = params.get("id", "")
        if not (client_id.isdigit() and len(client_id) <= 10 and int(client_id) != 0):
            return self._reply("MISSING_PARAMETER", b"")
        if not _NONCE_RE.match(nonce):
            return self._reply("MISSING_PARAMETER", b"")
        # 7. Unknown client.
        key = self.clients.get(client_id)
        if key is None:
            return self._reply("NO_SUCH_CLIENT", b"")
        forced = self.force_status
        if forced in _EARLY:
            return self._reply(forced, b"")
        # 8. The request signature, over the URL-decoded values.
        if "h" in params:
            if not hmac.compare_digest(sign(params, key), params["h"]):
                return self._reply("BAD_SIGNATURE", key)
        echo = {"otp": otp, "nonce": nonce}
        if forced is not None:
            extra = echo if forced in _WITH_ECHO else {}
            return self._reply(forced, key, extra | ({"sl": "100"} if forced == "NOT_ENOUGH_ANSWERS" else {}))
        # 9. Decrypt with the key stored for the public id.
        with self.store.lock:
            record = self.store.get(otp[:-32])
            if record is None or not record.active:
                return self._reply("BAD_OTP", key)
            try:
                token = decode_otp(otp, record.aes_key, private_id=record.private_id)
            except TokenError:
                return self._reply("BAD_OTP", key)
            # 10. The same OTP and the same nonce again: a resent request.
            if record.counters == token.counters and record.nonce == nonce:
                return self._reply("REPLAYED_REQUEST", key, echo)
            # 11. Counters not strictly greater than the last accepted pair.
            if record.counters is not None and record.counters >= token.counters:
                return self._reply("REPLAYED_OTP", key, echo)
            # 12. Remember them.
            record.counters, record.nonce = token.counters, nonce
        # 13. OK, with the key's clock and counters when asked for.
        extra = {**echo, "sl": "100"}
        if params.get("timestamp") == "1":
            extra |= {"timestamp": str(token.timestamp), "sessioncounter": str(token.usage), "sessionuse": str(token.session)}
        return self._reply("OK", key, extra)

    def _reply(self, status: str, key: bytes, extra: Mapping[str, str] | None = None) -> str:
        now = datetime.now(UTC)
        fields = {"t": now.strftime("%Y-%m-%dT%H:%M:%SZ0") + f"{now.microsecond // 1000:03d}", **(extra or {})}
        if self.wrong_echo and "nonce" in fields:
            fields["nonce"] = "x" * 25
        if self.omit_nonce:
            fields.pop("nonce", None)
        fields["status"] = status
        h = sign(fields, key)
        if self.bad_signature:
            h = base64.b64encode(hashlib.sha1(h.encode()).digest()).decode()
        # ykval's order: h, t, the extra fields, status; CRLF lines, then an empty line.
        lines = [f"h={h}"] + [f"{k}={v}" for k, v in fields.items()]
        return "\r\n".join(lines) + "\r\n\r\n"

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> FakeYubiCloud:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=f"yubicloud-fake:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering; the port then refuses connections ("server down")."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeYubiCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake YubiCloud validation server with one software YubiKey")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--otps", type=int, default=5, help="how many OTPs of the soft key to print")
    args = parser.parse_args(argv)
    fake = FakeYubiCloud(port=args.port)
    key = fake.new_key()
    with fake:
        print("[modules.yubikey]\nclients = true\nadmins = true")
        print(f'client_id = "{fake.client_id}"\nsecret_key = "{fake.api_key}"  # seal it for real use')
        print(f'api_urls = ["{fake.url}"]\n')
        print(f"OTPs of soft key {key.public_id} (each works once):")
        for _ in range(args.otps):
            print("  " + key.press())
        print("\nServing; Ctrl+C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
