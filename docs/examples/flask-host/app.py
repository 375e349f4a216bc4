"""A small Flask application that uses secmod's Python API for its second factor.

It is the embedding guide (docs/embedding.md) as running code, and the tests run it
(tests/test_flask_example.py): enrol with a QR code, log in, use a backup code, resync a
drifted phone, and eight racing sessions submitting one code, of which exactly one gets in.

Run it by hand::

    pip install secmod secmod-totp flask
    FLASK_APP=app.py SECMOD_CONFIG=secmod.toml flask run

Passwords live in a dict here; a real application has its own accounts. Everything
secmod keeps (enrolments, used codes, throttles, audit) is in secmod's own database.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from flask import Flask, abort, redirect, render_template_string, request, session, url_for
from markupsafe import Markup
from werkzeug.security import check_password_hash, generate_password_hash

from secmod.hookspecs import BACKUP_CODE_METHOD, Audience, Field, Prompt, User
from secmod.host import (
    Enrolled,
    Host,
    LoginStep,
    ModuleUnavailable,
    NotEnrolled,
    RequestContext,
    SecmodError,
    SetupExpired,
    UserLocked,
    VerifyResult,
)

PAGE = """<!doctype html>
<title>{{ title }}</title>
<h1>{{ title }}</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
{% if detail %}<p class="detail">{{ detail }}</p>{% endif %}
{{ body }}
"""

FORM = """{% if prompt.provisioning %}
<div class="qr">{{ qr }}</div>
<p>Or type this secret: <code id="secret">{{ prompt.provisioning.secret }}</code></p>
{% endif %}
<form method="post" action="{{ action }}">
  <p>{{ prompt.message }}</p>
  {% if prompt.instructions %}<p>{{ prompt.instructions }}</p>{% endif %}
  {% for field in prompt.fields %}
    {% if field.kind == "hidden" %}<input type="hidden" name="{{ field.name }}" value="{{ field.value }}">
    {% else %}<label>{{ field.label }}
      <input name="{{ field.name }}" type="{{ 'password' if field.kind == 'password' else 'text' }}"
             autocomplete="{{ field.autocomplete }}"></label>{% endif %}
  {% endfor %}
  <button>Continue</button>
</form>
{% for method in recovery %}<p><a href="{{ url_for('recover', method=method.name) }}">{{ method.label }}</a></p>{% endfor %}
"""


def create_app(host: Host, users: dict[str, str]) -> Flask:
    """The application: ``host`` is shared by every request (it is thread-safe);
    ``users`` maps an email to a password, hashed here."""
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(32)
    app.config["HOST"] = host
    hashed = {email: generate_password_hash(password) for email, password in users.items()}

    def page(title: str, body: str = "", *, error: str = "", detail: str = "", status: int = 200) -> Any:
        return render_template_string(PAGE, title=title, body=Markup(body), error=error, detail=detail), status

    def form(prompt: Prompt, action: str, *, user: User | None = None) -> str:
        qr = Markup(prompt.provisioning.qr_svg) if prompt.provisioning else ""
        recovery = [m for m in host.recovery_methods(user) if m.name != BACKUP_CODE_METHOD] if user else []
        return render_template_string(FORM, prompt=prompt, action=action, qr=qr, recovery=recovery)

    def person() -> User:
        """Who passed the password step in this session; secmod knows people by id."""
        email = session.get("email")
        if email is None:
            abort(401)
        return User(id=email, audience=Audience.CLIENT, email=email)

    def context() -> RequestContext:
        """Where the request comes from: audited, and the per-address throttle's key."""
        return RequestContext(client_ip=request.remote_addr or "", user_agent=request.headers.get("User-Agent", ""))

    def logged_in() -> Any:
        session["stage"] = "in"
        session.pop("challenge", None)
        return redirect(url_for("home"))

    @app.get("/")
    def home() -> Any:
        if session.get("stage") != "in":
            return redirect(url_for("login"))
        status = host.status(person())
        return page(f"Hello, {session['email']}", f"<p id='two-factor'>{'on' if status else 'off'}</p>")

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if request.method == "GET":
            return page("Log in", "<form method='post'><input name='email'><input name='password' type='password'>"
                                  "<button>Log in</button></form>")
        email = request.form.get("email", "")
        if email not in hashed or not check_password_hash(hashed[email], request.form.get("password", "")):
            return page("Log in", error="Login Details Incorrect. Please try again.", status=401)
        session.clear()  # a new session for a new login
        session["email"] = email
        state = host.login_state(person())
        if state.step is LoginStep.CHALLENGE:
            session["stage"] = "second_factor"
            return redirect(url_for("second_factor"))
        if state.step is LoginStep.MUST_SET_UP:
            session["stage"] = "must_set_up"
            return redirect(url_for("setup", module=state.choices[0]))
        return logged_in()

    # -- the second factor -----------------------------------------------------------

    def challenge_page(result: VerifyResult | None = None, status: int = 200) -> Any:
        user = person()
        saved: dict[str, Any] | None = session.get("challenge")
        if saved is None and (result is None or not result.challenge_open):
            if result is not None:  # a one-shot challenge was spent: the person asks again
                return page("Two-Factor Authentication", f"<a href='{url_for('second_factor')}'>Try again</a>",
                            error=result.message, detail=result.detail, status=status)
            try:
                started = host.begin_challenge(user, context=context())
            except UserLocked as locked:
                return page("Two-Factor Authentication", error=str(locked), status=429)
            except ModuleUnavailable as error:
                return page("Two-Factor Authentication", error=str(error), status=503)
            except NotEnrolled:
                return logged_in()  # 2FA was removed meanwhile: the password stands
            if isinstance(started, VerifyResult):
                return logged_in()  # the provider is down and the operator chose fail_mode = "open"
            if started.prompt.redirect_url:
                return redirect(started.prompt.redirect_url)
            # The challenge id is a bearer token for this person's challenge. Flask's session
            # is a signed cookie: the person may read the id (it is theirs, and secmod binds
            # it to them), nobody can change it, and it is never in a form field or a URL.
            saved = session["challenge"] = {"id": started.challenge_id, "message": started.prompt.message,
                                            "fields": [dataclasses.asdict(f) for f in started.prompt.fields]}
        if saved is None:  # an open challenge this session no longer holds: start again
            return redirect(url_for("second_factor"))
        prompt = Prompt(message=saved["message"], fields=tuple(Field(**f) for f in saved["fields"]))
        return page("Two-Factor Authentication", form(prompt, url_for("second_factor"), user=user)
                    + f"<p><a href='{url_for('backup')}'>Login using Backup Code</a></p>",
                    error=result.message if result else "", detail=result.detail if result else "", status=status)

    @app.route("/2fa", methods=["GET", "POST"])
    def second_factor() -> Any:
        if session.get("stage") != "second_factor":
            return redirect(url_for("login"))
        if request.method == "GET":
            return challenge_page()
        saved = session.get("challenge")
        if saved is None:
            return challenge_page()
        answer = {f["name"]: f["value"] if f["kind"] == "hidden" else request.form.get(f["name"], "")
                  for f in saved["fields"]}
        result = host.verify(person(), answer, challenge_id=saved["id"], context=context())
        if result.accepted:
            return logged_in()
        if not result.challenge_open:
            session.pop("challenge", None)
        return challenge_page(result, status=429 if result.locked_until else 401)

    @app.route("/backup", methods=["GET", "POST"])
    def backup() -> Any:
        return recover(BACKUP_CODE_METHOD)

    @app.route("/recover/<method>", methods=["GET", "POST"])
    def recover(method: str) -> Any:
        if session.get("stage") != "second_factor":
            return redirect(url_for("login"))
        user = person()
        chosen = next((m for m in host.recovery_methods(user) if m.name == method), None)
        if chosen is None:
            abort(404)
        action = request.path
        if request.method == "GET":
            return page(chosen.label, form(chosen.prompt, action))
        answer = {f.name: f.value if f.kind == "hidden" else request.form.get(f.name, "") for f in chosen.prompt.fields}
        result = host.recover(user, answer, method=chosen.name, context=context())
        if not result.accepted:
            return page(chosen.label, form(chosen.prompt, action), error=result.message, detail=result.detail,
                        status=429 if result.locked_until else 401)
        logged_in()
        codes = "".join(f"<p>Your New Backup Code is: <code class='backup'>{c}</code></p>" for c in result.new_backup_codes)
        return page("Logged in", codes + f"<a href='{url_for('home')}'>Continue</a>")

    # -- enrolment -----------------------------------------------------------------

    @app.route("/setup/<module>", methods=["GET", "POST"])
    def setup(module: str) -> Any:
        if session.get("stage") not in {"in", "must_set_up"}:
            return redirect(url_for("login"))
        user = person()
        try:
            if request.method == "GET":
                step = host.begin_setup(user, module)
            else:
                step = host.continue_setup(user, session.get("setup_id", ""), dict(request.form))
        except SetupExpired as expired:
            return page("Enable Two-Factor Authentication", error=str(expired), status=400)
        except SecmodError as error:
            return page("Enable Two-Factor Authentication", error=str(error), status=503)
        if isinstance(step, Enrolled):
            session.pop("setup_id", None)
            session["stage"] = "in"
            codes = "".join(f"<p>Your Backup Code is: <code class='backup'>{c}</code></p>" for c in step.backup_codes)
            return page("Two-Factor Authentication is now enabled", codes)
        session["setup_id"] = step.setup_id  # server-side state of this browser's enrolment
        return page("Enable Two-Factor Authentication", form(step.prompt, request.path), error=step.error,
                    detail=step.detail, status=400 if step.error else 200)

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return redirect(url_for("login"))

    return app


def app_from_config() -> Flask:  # pragma: no cover - the `flask run` entry point
    """``flask --app app:app_from_config run``: the host from ``$SECMOD_CONFIG``."""
    return create_app(Host.from_config(), {"ada@example.com": "correct horse battery"})
