"""A client-side deadline for PostgreSQL statements: a server that stops answering
becomes a refusal within seconds instead of a request held forever.

``statement_timeout`` is enforced by the server, so it cannot fire when the server is
frozen (SIGSTOP, a network path that drops everything, a proxy that forwards nothing):
the kernel still acknowledges what the client sends and the client waits on its socket
for an answer that never comes. One watchdog thread per process watches every connection
that is waiting on the server; past its deadline it shuts the socket down, the driver's
wait ends with a lost connection, SQLAlchemy drops it from the pool, and the Store turns
that into ``StoreUnavailable``.

Arming is a dict store per statement (no thread or timer per call, so the verify hot path
pays a microsecond). A connection is only ever cut while libpq says a command is in
progress on it, so one idling between statements, or held by a caller, is never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["arm_driver_connection", "watch_statements", "without_deadline"]

log = logging.getLogger("secmod.host")

CHECK_EVERY_SECONDS = 0.25
_NO_DEADLINE = "secmod_no_deadline"  # an execution option
_COMMAND_IN_PROGRESS = 1  # libpq's PQTRANS_ACTIVE


class _Watchdog:
    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # Keyed by id(): entries are removed when their connection goes back to the pool,
        # is closed or is cut. Plain dict operations are atomic under the GIL.
        self.waiting: dict[int, tuple[float, Any]] = {}
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def arm(self, dbapi_connection: Any, seconds: float) -> None:
        self.waiting[id(dbapi_connection)] = (time.monotonic() + seconds, dbapi_connection)
        if self._thread is None:
            self._start()

    def disarm(self, dbapi_connection: Any) -> None:
        self.waiting.pop(id(dbapi_connection), None)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="secmod-read-deadline", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(CHECK_EVERY_SECONDS)
            now = time.monotonic()
            for key, (deadline, connection) in list(self.waiting.items()):
                if now >= deadline:
                    self.waiting.pop(key, None)
                    _cut_if_waiting(connection)


def _cut_if_waiting(connection: Any) -> None:
    pgconn = getattr(connection, "pgconn", None)
    if pgconn is None or connection.closed or pgconn.transaction_status != _COMMAND_IN_PROGRESS:
        return
    with contextlib.suppress(Exception):  # closed under us: nothing left to cut
        # shutdown() acts on the socket itself, so cutting a duplicate of libpq's
        # descriptor ends libpq's wait while libpq still owns (and later closes) its own.
        cut = socket.socket(fileno=os.dup(pgconn.socket))
        try:
            cut.shutdown(socket.SHUT_RDWR)
        finally:
            cut.close()
        log.error("database did not answer within its deadline: connection cut")


_watchdog = _Watchdog()
# The deadline of each watched engine, by its pool (an engine's copies made with
# execution_options() share it).
_seconds_by_pool: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def watch_statements(engine: Engine, seconds: float) -> None:
    """Cut any of ``engine``'s PostgreSQL connections that waits on the server for longer
    than ``seconds`` in one statement, commit, rollback or pool reset."""

    def arm_statement(conn: sa.Connection, cursor: Any, *_: Any) -> None:
        if not conn.get_execution_options().get(_NO_DEADLINE):
            _watchdog.arm(cursor.connection, seconds)

    def arm_transaction_end(conn: sa.Connection) -> None:
        # An invalidated connection has nothing left to wait on (and asking it for its
        # DBAPI connection would try to reconnect).
        if not conn.invalidated and not conn.closed and not conn.get_execution_options().get(_NO_DEADLINE):
            _watchdog.arm(conn.connection.dbapi_connection, seconds)

    def arm_pooled(dbapi_connection: Any, *_: Any) -> None:
        _watchdog.arm(dbapi_connection, seconds)

    def disarm_pooled(dbapi_connection: Any, *_: Any) -> None:
        _watchdog.disarm(dbapi_connection)

    _seconds_by_pool[engine.pool] = seconds
    sa.event.listen(engine, "before_cursor_execute", arm_statement)
    sa.event.listen(engine, "commit", arm_transaction_end)
    sa.event.listen(engine, "rollback", arm_transaction_end)
    sa.event.listen(engine, "reset", arm_pooled)
    for finished in ("checkin", "close", "close_detached", "invalidate"):
        sa.event.listen(engine, finished, disarm_pooled)


def arm_driver_connection(engine: Engine, dbapi_connection: Any) -> None:
    """Start the deadline of one statement run on the driver's own cursor (which SQLAlchemy's
    events never see). Arm before each statement; the pool disarms the connection at checkin."""
    seconds = _seconds_by_pool.get(engine.pool)
    if seconds is not None:
        _watchdog.arm(dbapi_connection, seconds)


def without_deadline(engine: Engine) -> Engine:
    """``engine`` for work that may wait on the server longer than a login may (migrations):
    its statements are never cut. The server's ``statement_timeout`` is the caller's to lift."""
    return engine.execution_options(**{_NO_DEADLINE: True})
