"""A fake Duo server speaking the Universal Prompt (OIDC) protocol over local HTTPS.

It answers the three endpoints ``duo_universal.Client`` uses, exactly as
docs/protocols.md §1.8 describes (shared docs), so the secmod Duo module is tested
through the real client, never by patching it:

- ``POST /oauth/v1/health_check``: form body, HS512 ``client_assertion``;
- ``GET /oauth/v1/authorize``: checks the request JWT and, instead of Duo's prompt,
  answers 302 back to ``redirect_uri`` with ``duo_code`` and ``state`` (or shows an
  Approve / Deny page when ``interactive``);
- ``POST /oauth/v1/token``: parameters in the *query string* (the body is empty),
  one-time codes, an HS512 ``id_token`` signed with the client secret.

The JWTs are made and checked here with ``hmac`` rather than PyJWT, so the fake is an
independent implementation of the format: a bug shared with the client's JWT library
cannot make both sides agree by accident.

Switches (plain attributes, change them any time)::

    fake.health = "ok" | "fail" | "invalid_client" | "html_500" | "json_503" | "hang" | "drop"
    fake.token  = "allow" | "deny" | "expired" | "bad_signature" | "wrong_nonce"
                | "wrong_user" | "no_id_token" | "html_500" | "json_503" | "hang" | "drop"

``hang`` accepts the request and never answers (until :meth:`FakeDuo.stop`, or
``hang_seconds``); ``drop`` closes the connection without a response, as a crashed
proxy would. For "Duo down", stop the server or use :func:`closed_port`.

Try secmod without a Duo account::

    python -m secmod_duo.testing.fake --port 8443 --interactive

prints a ``[modules.duo]`` table to paste into ``secmod.toml``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import hmac
import html
import json
import secrets
import signal
import socket
import ssl
import string
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from secmod.testing.tls import LocalCA, LoopbackServer

__all__ = ["FakeDuo", "HEALTH_MODES", "TOKEN_MODES", "closed_port", "random_client_id", "random_client_secret"]

HEALTH_MODES = frozenset({"ok", "fail", "invalid_client", "html_500", "json_503", "hang", "drop"})
TOKEN_MODES = frozenset(
    {"allow", "deny", "expired", "bad_signature", "wrong_nonce", "wrong_user", "no_id_token",
     "html_500", "json_503", "hang", "drop"}
)
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ALNUM = string.ascii_letters + string.digits
_FAULTS = frozenset({"html_500", "json_503", "hang", "drop"})


def random_client_id() -> str:
    """20 characters starting with ``DI``, the shape of a real Duo Client ID."""
    return "DI" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(18))


def random_client_secret() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(40))


def closed_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` with nothing listening (connections are refused): "Duo down"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# -- a small HS512 JWT implementation (see the module docstring for why) ------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_encode(claims: Mapping[str, Any], key: str) -> str:
    header = _b64(json.dumps({"alg": "HS512", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(dict(claims), separators=(",", ":")).encode())
    signature = hmac.new(key.encode(), f"{header}.{payload}".encode(), hashlib.sha512).digest()
    return f"{header}.{payload}.{_b64(signature)}"


class JWTError(ValueError):
    """A JWT the fake refuses; the text says why (it never holds the token)."""


def jwt_decode(token: str, key: str, *, audience: str, issuer: str, now: float) -> dict[str, Any]:
    """Check an HS512 JWT as Duo would: signature, ``aud``, ``iss`` and ``exp``."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(_unb64(header_b64))
        claims = json.loads(_unb64(payload_b64))
        signature = _unb64(signature_b64)
    except (ValueError, TypeError):
        raise JWTError("malformed token") from None
    if not isinstance(header, dict) or header.get("alg") != "HS512" or not isinstance(claims, dict):
        raise JWTError("algorithm must be HS512")
    expected = hmac.new(key.encode(), f"{header_b64}.{payload_b64}".encode(), hashlib.sha512).digest()
    if not hmac.compare_digest(expected, signature):
        raise JWTError("bad signature")
    if claims.get("aud") != audience:
        raise JWTError("wrong audience")
    if claims.get("iss") != issuer:
        raise JWTError("wrong issuer")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp <= now:
        raise JWTError("expired or missing exp")
    return claims


# -- the server ---------------------------------------------------------------------

class _HTTPSServer(LoopbackServer):
    fake: FakeDuo

    def tls_context(self) -> ssl.SSLContext:
        return self.fake.ca.server_context()


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPSServer
    protocol_version = "HTTP/1.1"
    server_version = "FakeDuo/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet, and request lines carry codes and states: never print them.
        pass

    @property
    def fake(self) -> FakeDuo:
        return self.server.fake

    # -- plumbing --

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] = {}) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: Mapping[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _fault(self, mode: str) -> bool:
        """Play a transport fault; True when the request has been dealt with."""
        if mode not in _FAULTS:
            return False
        if mode == "hang":
            # Accept, read, and answer nothing: only a client-side timeout gets out.
            self.fake._released.wait(self.fake.hang_seconds)
            self.close_connection = True
        elif mode == "drop":
            self.close_connection = True
        elif mode == "html_500":
            page = b"<html><body><h1>500 Internal Server Error</h1></body></html>"
            self._send(500, page, "text/html; charset=utf-8")
        else:  # json_503
            self._json(503, {"stat": "FAIL", "code": 50301, "message": "Service Unavailable",
                             "message_detail": "fake Duo is in maintenance", "timestamp": int(time.time())})
        return True

    def _fail(self, status: int, message: str, detail: str) -> None:
        self._json(status, {"stat": "FAIL", "code": status * 100 + 2, "message": message,
                            "message_detail": detail, "timestamp": int(time.time())})

    # -- routes --

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        if path == "/oauth/v1/health_check":
            self.fake.calls["health_check"] += 1
            self._health_check(body)
        elif path == "/oauth/v1/token":
            self.fake.calls["token"] += 1
            self.fake.token_bodies.append(body)
            self._token()
        else:
            self._json(404, {"stat": "FAIL", "code": 40401, "message": "not found"})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/oauth/v1/authorize":
            self.fake.calls["authorize"] += 1
            self._authorize(parse_qs(url.query))
        elif url.path == "/oauth/v1/authorize/decide" and self.fake.interactive:
            self._decide(parse_qs(url.query))
        else:
            self._send(404, b"not found", "text/plain")

    def _check_assertion(self, assertion: str, endpoint: str) -> str | None:
        """Why the client assertion is refused, or None when it is good."""
        fake = self.fake
        try:
            claims = jwt_decode(assertion, fake.client_secret, audience=fake.url(endpoint),
                                issuer=fake.client_id, now=time.time())
        except JWTError as error:
            return str(error)
        if claims.get("sub") != fake.client_id:
            return "sub must be the client id"
        jti = claims.get("jti")
        if not isinstance(jti, str) or len(jti) < 16:
            return "missing jti"
        with fake._lock:
            if jti in fake._seen_jti:
                return "jti reused"
            fake._seen_jti.add(jti)
        return None

    def _health_check(self, body: bytes) -> None:
        fake = self.fake
        if self._fault(fake.health):
            return
        form = {k: v[0] for k, v in parse_qs(body.decode("ascii", "replace")).items()}
        problem = None
        if form.get("client_id") != fake.client_id:
            problem = "unknown client_id"
        else:
            problem = self._check_assertion(form.get("client_assertion", ""), "/oauth/v1/health_check")
        if problem or fake.health == "invalid_client":
            self._fail(400, "invalid_client", problem or "The client credentials are not valid")
        elif fake.health == "fail":
            self._fail(503, "Service Unavailable", "fake Duo says it is unhealthy")
        else:
            self._json(200, {"stat": "OK", "response": {"timestamp": int(time.time())}})

    def _authorize(self, query: Mapping[str, list[str]]) -> None:
        fake = self.fake
        params = {k: v[0] for k, v in query.items()}
        try:
            if params.get("response_type") != "code" or params.get("client_id") != fake.client_id:
                raise JWTError("response_type must be code and client_id known")
            claims = jwt_decode(params.get("request", ""), fake.client_secret, audience=fake.url(""),
                                issuer=fake.client_id, now=time.time())
            if claims.get("client_id") != fake.client_id or claims.get("response_type") != "code":
                raise JWTError("request JWT does not match the query")
            if claims.get("scope") != "openid":
                raise JWTError("scope must be openid")
            for claim in ("redirect_uri", "state", "duo_uname"):
                if not isinstance(claims.get(claim), str) or not claims[claim]:
                    raise JWTError(f"request JWT has no {claim}")
        except JWTError as error:
            self._send(400, f"Invalid request: {error}".encode(), "text/plain; charset=utf-8")
            return
        fake.usernames.append(claims["duo_uname"])
        record = {
            "username": claims["duo_uname"],
            "nonce": params.get("nonce"),  # the nonce travels outside the JWT
            "redirect_uri": claims["redirect_uri"],
            "state": claims["state"],
            "code_param": "duo_code" if claims.get("use_duo_code_attribute", True) else "code",
            "outcome": None,
            "issued": time.time(),
        }
        if fake.interactive:
            ticket = secrets.token_urlsafe(16)
            with fake._lock:
                fake._tickets[ticket] = record
            self._send(200, _prompt_page(ticket, record["username"]), "text/html; charset=utf-8")
            return
        self._redirect_back(record)

    def _decide(self, query: Mapping[str, list[str]]) -> None:
        fake = self.fake
        ticket = query.get("ticket", [""])[0]
        decision = query.get("decision", [""])[0]
        with fake._lock:
            record = fake._tickets.pop(ticket, None)
        if record is None or decision not in ("allow", "deny"):
            self._send(400, b"Unknown or used prompt", "text/plain")
            return
        record["outcome"] = decision
        self._redirect_back(record)

    def _redirect_back(self, record: dict[str, Any]) -> None:
        fake = self.fake
        code = secrets.token_urlsafe(24)
        with fake._lock:
            fake._codes[code] = record
        separator = "&" if urlsplit(record["redirect_uri"]).query else "?"
        location = record["redirect_uri"] + separator + urlencode({record["code_param"]: code, "state": record["state"]})
        self._send(302, b"", "text/plain", {"Location": location})

    def _token(self) -> None:
        fake = self.fake
        if self._fault(fake.token):
            return
        params = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if params.get("grant_type") != "authorization_code":
            self._json(400, {"error": "unsupported_grant_type", "error_description": "grant_type"})
            return
        problem = None
        if params.get("client_id") != fake.client_id:
            problem = "unknown client_id"
        elif params.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            problem = "client_assertion_type"
        else:
            problem = self._check_assertion(params.get("client_assertion", ""), "/oauth/v1/token")
        if problem:
            self._json(400, {"error": "invalid_client", "error_description": problem})
            return
        with fake._lock:
            record = fake._codes.pop(params.get("code", ""), None)  # codes are one-time
        if record is None or time.time() - record["issued"] > fake.code_ttl:
            self._json(400, {"error": "invalid_grant", "error_description": "The code is unknown, used or expired"})
            return
        if params.get("redirect_uri") != record["redirect_uri"]:
            self._json(400, {"error": "invalid_grant", "error_description": "redirect_uri does not match"})
            return
        outcome = record["outcome"] or fake.token
        if outcome == "no_id_token":
            self._json(200, {"access_token": secrets.token_urlsafe(16), "expires_in": 3600, "token_type": "Bearer"})
            return
        self._json(200, {
            "id_token": fake.id_token(record, outcome),
            "access_token": secrets.token_urlsafe(16),
            "expires_in": 3600,
            "token_type": "Bearer",
        })


def _prompt_page(ticket: str, username: str) -> bytes:
    who = html.escape(username)
    ticket = html.escape(ticket)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fake Duo prompt</title>
<style>body{{font-family:sans-serif;max-width:28rem;margin:4rem auto}}
button{{font-size:1.1rem;padding:.5rem 1.2rem;margin-right:1rem}}</style></head>
<body><h1>Fake Duo</h1>
<p>This is secmod's <strong>fake</strong> Duo server, for trying secmod without a Duo
account. Never use it in production.</p>
<p>Approve the login of <strong>{who}</strong>?</p>
<form action="/oauth/v1/authorize/decide" method="get">
<input type="hidden" name="ticket" value="{ticket}">
<button name="decision" value="allow">Approve</button>
<button name="decision" value="deny">Deny</button>
</form></body></html>""".encode()


class FakeDuo:
    """A fake Duo API host on ``https://127.0.0.1:PORT``, served from a background thread.

    :param client_id: the Web SDK application's Client ID (random when ``None``).
    :param client_secret: its Client Secret (random when ``None``).
    :param ca: the CA whose certificate the server presents; a fresh one when ``None``.
    :param host: the address to listen on and to put in every URL (``127.0.0.1``).
    :param port: 0 for an ephemeral port.
    :param interactive: show an Approve / Deny page at authorize instead of redirecting
        back at once.
    """

    def __init__(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        ca: LocalCA | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        interactive: bool = False,
    ) -> None:
        self.client_id = client_id or random_client_id()
        self.client_secret = client_secret or random_client_secret()
        self._own_ca = ca is None
        self.ca = ca or LocalCA()
        self.host = host
        self.interactive = interactive
        self.health = "ok"
        self.token = "allow"
        self.hang_seconds = 30.0
        self.code_ttl = 60.0
        self.calls: collections.Counter[str] = collections.Counter()
        self.token_bodies: list[bytes] = []
        self.usernames: list[str] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._codes: dict[str, dict[str, Any]] = {}
        self._tickets: dict[str, dict[str, Any]] = {}
        self._seen_jti: set[str] = set()
        self._released = threading.Event()
        self._server = _HTTPSServer((host, port), _Handler)
        self._server.fake = self
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        # A typo in a switch would silently test the happy path: refuse it.
        if name == "health" and value not in HEALTH_MODES:
            raise ValueError(f"health must be one of {sorted(HEALTH_MODES)}")
        if name == "token" and value not in TOKEN_MODES:
            raise ValueError(f"token must be one of {sorted(TOKEN_MODES)}")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"FakeDuo(api_hostname={self.api_hostname!r}, health={self.health!r}, token={self.token!r})"

    @property
    def api_hostname(self) -> str:
        """What goes in the module's ``api_hostname`` (the client builds every URL from it)."""
        return f"{self.host}:{self.port}"

    @property
    def ca_file(self) -> str:
        return str(self.ca.ca_path)

    def url(self, path: str) -> str:
        return f"https://{self.api_hostname}{path}"

    def settings(self, redirect_url: str, **extra: Any) -> dict[str, Any]:
        """A ``[modules.duo]`` table pointing at this fake."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "api_hostname": self.api_hostname,
            "redirect_url": redirect_url,
            "ca_file": self.ca_file,
            **extra,
        }

    def come_back(self, auth_url: str) -> dict[str, str]:
        """Play the browser: open Duo's prompt URL and return the query it redirects back with.

        :raises AssertionError: the fake did not answer with a redirect (its text says why).
        """
        import requests  # a test dependency; the server itself needs only the stdlib

        response = requests.get(auth_url, allow_redirects=False, verify=self.ca_file, timeout=10)
        assert response.status_code == 302, f"fake Duo answered {response.status_code}: {response.text[:200]}"
        query = urlsplit(response.headers["Location"]).query
        return {key: values[0] for key, values in parse_qs(query).items()}

    def id_token(self, record: Mapping[str, Any], outcome: str) -> str:
        """The id_token Duo would send for a code issued to ``record``, as ``outcome`` asks."""
        now = int(time.time())
        allowed = outcome != "deny"
        username = record["username"] if outcome != "wrong_user" else "someone-else@example.invalid"
        claims: dict[str, Any] = {
            "iss": self.url("/oauth/v1/token"),
            "aud": self.client_id,
            "sub": username,
            "preferred_username": username,
            "iat": now if outcome != "expired" else now - 600,
            "exp": now + 300 if outcome != "expired" else now - 120,
            "auth_time": now,
            "jti": "".join(secrets.choice(_ALNUM) for _ in range(36)),
            "auth_result": (
                {"result": "allow", "status": "allow", "status_msg": "Login Successful"}
                if allowed else {"result": "deny", "status": "deny", "status_msg": "Login denied"}
            ),
            "auth_context": {
                "result": "success" if allowed else "denied",
                "factor": "duo_push",
                "reason": "user_approved" if allowed else "user_marked_fraud",
                "txid": secrets.token_hex(16),
                "timestamp": now,
                "event_type": "authentication",
                "user": {"name": username, "key": "DU" + secrets.token_hex(9).upper(), "groups": []},
                "application": {"key": self.client_id, "name": "secmod (fake)"},
                "access_device": {"ip": "127.0.0.1"},
                "auth_device": {"ip": "127.0.0.1", "name": "fake phone"},
            },
        }
        if record.get("nonce"):
            claims["nonce"] = record["nonce"] if outcome != "wrong_nonce" else "not-the-nonce-" + secrets.token_hex(8)
        key = self.client_secret if outcome != "bad_signature" else random_client_secret()
        return jwt_encode(claims, key)

    def start(self) -> FakeDuo:
        self._released.clear()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-duo-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port (connections are refused afterwards)."""
        self._released.set()  # let hung requests go
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        if self._own_ca:
            self.ca.close()

    def __enter__(self) -> FakeDuo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m secmod_duo.testing.fake",
        description="Run a fake Duo API host on 127.0.0.1 for trying secmod without a Duo account.",
    )
    parser.add_argument("--port", type=int, default=8443, help="port to listen on (0: any free port)")
    parser.add_argument("--redirect-url", default="http://localhost:8000/login/duo/callback",
                        help="the secmod web host's Duo callback ({web.base_url}/login/duo/callback)")
    parser.add_argument("--no-prompt", action="store_true",
                        help="approve every login at once instead of showing an Approve / Deny page")
    args = parser.parse_args(argv)
    ca = LocalCA(directory=None)
    fake = FakeDuo(port=args.port, ca=ca, interactive=not args.no_prompt)
    table = fake.settings(args.redirect_url, clients=True, admins=True)
    print("Fake Duo listening on", fake.url(""), "(Ctrl-C to stop). Paste into secmod.toml:\n")
    print("[modules.duo]")
    for key, value in table.items():
        print(f"{key} = {json.dumps(value)}")
    print("\nThese credentials and the CA are thrown away when the fake stops.", flush=True)
    stop = threading.Event()
    # SIGTERM too, so the throwaway CA folder is removed however the fake is stopped.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with fake:
            while not stop.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        ca.close()


if __name__ == "__main__":
    main()
