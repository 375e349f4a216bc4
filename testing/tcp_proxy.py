"""A loopback TCP proxy in front of a database, to take it away in a test and give it back.

``cut()`` drops every connection and refuses new ones (the server is gone); ``freeze()``
keeps connections open but forwards nothing (the server stalls); ``restore()`` brings
service back. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from types import TracebackType

__all__ = ["TcpProxy"]

_POLL = 0.05


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream``; a context manager."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.port: int = self._listener.getsockname()[1]
        self._state = "open"  # open | cut | frozen
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    def __enter__(self) -> TcpProxy:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stopping.set()
        self._drop_all()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()

    def cut(self) -> None:
        self._state = "cut"
        self._drop_all()

    def freeze(self) -> None:
        self._state = "frozen"

    def restore(self) -> None:
        self._state = "open"

    def _drop_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for end in pair:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._state == "cut":
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            thread = threading.Thread(target=self._pump, args=(client, server), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        while not self._stopping.is_set():
            if self._state == "frozen":
                self._stopping.wait(_POLL)
                continue
            try:
                readable, _, _ = select.select(list(peers), [], [], _POLL)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        raise OSError("closed")
                    peers[source].sendall(data)
            except (OSError, ValueError):
                break
        for end in (client, server):
            with contextlib.suppress(OSError):
                end.close()
