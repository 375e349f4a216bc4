"""What an operator watches: ``/metrics`` (Prometheus) and ``/healthz``.

Counting happens here, around the Host the web host builds (:class:`MeteredHost`), so
the core stays free of metrics and every way in (pages, JSON API, Duo callback) is
counted once. Provider latency comes from the modules' ``provider_call`` blocks.

With ``secmod serve --workers N`` each worker is its own process: ``secmod serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` before any worker starts, and ``/metrics`` then adds up the
files of every worker (prometheus-client's multi-process mode), whichever worker answers.
The metrics are made on first use, never at import, so a process that imported this
module before the directory was set still counts in the right mode.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from secmod.hookspecs import User, add_provider_observer
from secmod.host import Host, ModuleUnavailable, Outcome, VerifyResult
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = [
    "MULTIPROC_ENV",
    "HealthCheck",
    "MeteredHost",
    "Metrics",
    "health_endpoint",
    "metrics",
    "metrics_endpoint",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The reasons the host gives when no module could judge an answer: it crashed or returned
# the wrong type, it is not loaded, or the person's state does not open.
MODULE_ERROR_REASONS = frozenset({"module_error", "module_unavailable", "state_unreadable"})

# Duo and YubiCloud answer in tens to hundreds of milliseconds; a timeout is seconds.
PROVIDER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Duo's health check on every probe would cost a round trip to Duo per probe.
ACTIVATION_RECHECK_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class Metrics:
    """The Prometheus series secmod keeps (one set per process)."""

    verifies: Any
    lockouts: Any
    module_errors: Any
    provider_calls: Any


_made: list[Metrics] = []
_making = threading.Lock()


def metrics() -> Metrics:
    """This process's series, made on the first call (by one thread: a second
    registration of a name is an error in prometheus-client)."""
    if _made:
        return _made[0]
    with _making:
        if not _made:
            _made.append(_make_metrics())
    return _made[0]


def _make_metrics() -> Metrics:
    from prometheus_client import Counter, Histogram

    made = Metrics(
        verifies=Counter(
            "secmod_verifies",
            "Answers judged, by module, event (verify or recover) and outcome.",
            ["module", "event", "outcome"],
        ),
        lockouts=Counter("secmod_lockouts", "Lockouts started (too many failures).", ["module"]),
        module_errors=Counter(
            "secmod_module_errors",
            "Answers a module could not judge (crash, missing module, unreadable state).",
            ["module", "hook"],
        ),
        provider_calls=Histogram(
            "secmod_provider_call_seconds",
            "Calls from a module to its provider (Duo, YubiCloud).",
            ["provider", "operation", "outcome"],
            buckets=PROVIDER_BUCKETS,
        ),
    )

    def observe(provider: str, operation: str, seconds: float, ok: bool) -> None:
        made.provider_calls.labels(provider, operation, "ok" if ok else "error").observe(seconds)

    add_provider_observer(observe)
    return made


def record(result: VerifyResult, *, event: str, started: float, lockout_seconds: float) -> None:
    """Count one judged answer; ``started`` is the host clock just before the call."""
    counted = metrics()
    module = result.module or ""
    counted.verifies.labels(module, event, result.outcome.value).inc()
    if result.reason in MODULE_ERROR_REASONS:
        counted.module_errors.labels(module, event).inc()
    # The answer that starts a lockout gets ``locked_until = now + lockout`` with the
    # host's ``now`` of this call; answers refused by a lockout already running carry
    # an earlier end. So this tells a new lockout apart without asking the database.
    if (
        result.outcome is Outcome.LOCKED
        and result.locked_until is not None
        and result.locked_until.timestamp() >= started + lockout_seconds - 0.001
    ):
        counted.lockouts.labels(module).inc()


class MeteredHost(Host):
    """The Host of ``secmod serve``: the same, with each verify and recover counted."""

    def verify(self, user: User, answer: Mapping[str, str], **kwargs: Any) -> VerifyResult:
        return self._counted("verify", super().verify, user, answer, **kwargs)

    def recover(self, user: User, answer: Mapping[str, str], **kwargs: Any) -> VerifyResult:
        return self._counted("recover", super().recover, user, answer, **kwargs)

    def _counted(self, event: str, call: Callable[..., VerifyResult], *args: Any, **kwargs: Any) -> VerifyResult:
        started = self.clock()
        result = call(*args, **kwargs)
        record(result, event=event, started=started, lockout_seconds=self.settings.throttle.lockout_minutes * 60)
        return result


def render_metrics() -> tuple[bytes, str]:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    metrics()  # the series exist (at zero) before the first login
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


async def metrics_endpoint(request: Request) -> Response:
    body, content_type = await run_in_threadpool(render_metrics)
    return Response(body, media_type=content_type)


class HealthCheck:
    """``/healthz``: can this process reach the database, and do the enabled modules activate?

    Activation results are kept for :data:`ACTIVATION_RECHECK_SECONDS` per Host (a
    settings change builds a new Host and so checks again).
    """

    def __init__(self, *, recheck_seconds: float = ACTIVATION_RECHECK_SECONDS) -> None:
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._cached: tuple[int, float, dict[str, str]] | None = None

    def report(self, host: Host) -> dict[str, Any]:
        database = _database_status(host)
        modules = self._modules(host)
        healthy = database == "ok" and all(status == "ok" for status in modules.values())
        return {"status": "ok" if healthy else "failing", "database": database, "modules": modules}

    def _modules(self, host: Host) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            cached = self._cached
            if (
                cached is not None
                and cached[0] == id(host)
                and now - cached[1] < self.recheck_seconds
            ):
                return cached[2]
        statuses: dict[str, str] = {}
        for name, settings in sorted(host.module_settings.items()):
            if not (settings.clients or settings.admins):
                continue
            try:
                host.activate(name)
                statuses[name] = "ok"
            except ModuleUnavailable as error:
                statuses[name] = f"failing: {error}"
        with self._lock:
            self._cached = (id(host), now, statuses)
        return statuses


def _database_status(host: Host) -> str:
    try:
        with host.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any driver error means the same to a load balancer
        return f"unreachable ({type(error).__name__})"
    return "ok"


async def health_endpoint(request: Request) -> Response:
    web = request.app.state.web
    report = await run_in_threadpool(web.health.report, web.host)
    return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)
