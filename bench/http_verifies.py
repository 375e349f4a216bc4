"""Accepted verifies per second through ``secmod serve --workers N`` (JSON API), next to
accepted ``Host.verify`` calls per second in this process, on the same database.

    python bench/http_verifies.py [--workers 1 2 4] [--seconds 5]

Every request is a different person with the right code (each code is accepted once), so
the people are enrolled first in bulk (bench/fill.py). The load comes from one client
process on keep-alive connections, sharing the machine's cores with the server as a
reverse proxy would. Throughput is measured with 1, 2 and 4 requests in flight per
worker and the best is compared: past the point where the workers are busy, more
requests in flight only queue, and the threads they occupy contend (every figure is
printed, so the fall at higher loads stays visible).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import selectors
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import pyotp

sys.path.insert(0, str(Path(__file__).parent))

from fill import fill_totp_users, secret_for, user_id  # noqa: E402

from secmod.hookspecs import Audience, User  # noqa: E402
from secmod.host import Host  # noqa: E402
from secmod.settings import load_settings  # noqa: E402
from secmod.testing import postgres_schema_url  # noqa: E402
from secmod.testing.serve import ServeProcess  # noqa: E402

TOKEN = "bench-api-token-0123456789"
TARGET_SHARE = 0.25  # issue 10: HTTP accepted verifies/s >= 25% of in-process Host.verify/s


def bodies(first: int, count: int) -> list[bytes]:
    # The next step's code: inside the ±1 step window for the whole run, and never the
    # step a filled state already holds as used.
    at = time.time() + 30
    return [
        json.dumps(
            {
                "user": {"id": user_id(i)},
                "answer": {"code": pyotp.TOTP(secret_for(user_id(i))).at(at)},
            }
        ).encode()
        for i in range(first, first + count)
    ]


def request_bytes(port: int, body: bytes) -> bytes:
    return (
        f"POST /api/v1/verify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _client(
    port: int, payloads: list[bytes], connections: int, seconds: float, results: multiprocessing.Queue
) -> None:
    """``connections`` keep-alive connections, each sending its next request as soon as
    the last answer is in, from one thread: a load generator that costs the shared cores
    little (http.client in threads cost about as much CPU as the server did)."""
    requests = [request_bytes(port, body) for body in payloads]
    selector = selectors.DefaultSelector()
    accepted = other = 0
    sent = 0
    deadline = time.monotonic() + seconds

    def send_next(sock: socket.socket) -> bool:
        nonlocal sent
        if sent >= len(requests) or time.monotonic() >= deadline:
            selector.unregister(sock)
            sock.close()
            return False
        sock.sendall(requests[sent])
        sent += 1
        return True

    began = time.monotonic()
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        selector.register(sock, selectors.EVENT_READ, data=bytearray())
        send_next(sock)
    while selector.get_map():
        for key, _ in selector.select(timeout=30):
            sock, buffer = cast(socket.socket, key.fileobj), key.data
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("the server closed a keep-alive connection")
            buffer += chunk
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            head = bytes(buffer[:head_end]).lower()
            length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            if len(buffer) < head_end + 4 + length:
                continue
            answer = bytes(buffer[head_end + 4 : head_end + 4 + length])
            del buffer[:]
            if b'"outcome":"accepted"' in answer:
                accepted += 1
            else:
                other += 1
            send_next(sock)
    results.put((accepted, other, time.monotonic() - began))


def http_rate(
    server: ServeProcess, first: int, count: int, seconds: float, connections: int
) -> tuple[float, int, int]:
    """Accepted verifies/s over ``seconds`` on ``connections`` connections; returns
    (rate, answers, answers not accepted)."""
    results: multiprocessing.Queue = multiprocessing.Queue()
    client = multiprocessing.Process(
        target=_client, args=(server.port, bodies(first, count), connections, seconds, results)
    )
    client.start()
    accepted, refused, elapsed = results.get(timeout=seconds + 120)
    client.join(30)
    return accepted / elapsed, accepted + refused, refused


def server_cpu_seconds(server: ServeProcess) -> float:
    """CPU time (user + system) the server's serving processes have used so far."""
    assert server.process is not None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in server.worker_pids() or [server.process.pid]:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def in_process_rate(host: Host, first: int, count: int) -> tuple[float, float]:
    """Accepted Host.verify/s, one call after another (codes made before timing), and the
    CPU seconds each took."""
    at = time.time() + 30
    work = []
    for index in range(first, first + count):
        code = pyotp.TOTP(secret_for(user_id(index))).at(at)
        work.append((User(id=user_id(index), audience=Audience.CLIENT), {"code": code}))
    for user, answer in work[:50]:  # warm: caches, the pool
        host.verify(user, answer)
    began, cpu = time.perf_counter(), time.process_time()
    for user, answer in work[50:]:
        result = host.verify(user, answer)
        if not result.accepted:
            raise SystemExit(f"bench verify was rejected: {result.reason}")
    done = count - 50
    return done / (time.perf_counter() - began), (time.process_time() - cpu) / done


def connection_counts(workers: int) -> tuple[int, ...]:
    """The loads tried against ``workers`` workers, in requests in flight at once."""
    return (workers, 2 * workers, 4 * workers)


def run(
    database_url: str, workdir: Path, workers: list[int], seconds: float, label: str
) -> list[tuple[str, str, bool]]:
    """Print the figures for one database; returns (figure, target, met) lines."""
    config = workdir / f"secmod-{label}.toml"
    config.write_text(
        f'database_url = "{database_url}"\n[sealing]\nkey_file = "{workdir / "bench.keys"}"\n'
        f'[web]\napi_token = "{TOKEN}"\n'
    )
    rounds = 3
    slice_seconds = seconds / rounds
    per_slice = int(slice_seconds * 3500) + 500  # more people than the fastest slice can use
    local_slice = 700
    needed = sum(
        (local_slice + per_slice * len(connection_counts(count))) * rounds for count in workers
    )
    lines = []
    with Host(load_settings(config)) as host:
        took = fill_totp_users(host, needed)
        print(f"  {label}: enrolled {needed:,} people in {took:.1f} s")
        first = 0
        for count in workers:
            loads = connection_counts(count)
            with ServeProcess(
                config, workers=count, log_file=workdir / f"serve-{label}-{count}.log"
            ) as server:
                # In-process and HTTP take turns, so a busy machine weighs on both alike;
                # the medians of the rounds are compared.
                locals_, local_cpus = [], []
                rates: dict[int, list[float]] = {load: [] for load in loads}
                cpus: dict[int, list[float]] = {load: [] for load in loads}
                refused = 0
                for _ in range(rounds):
                    local, local_cpu = in_process_rate(host, first, local_slice)
                    first += local_slice
                    locals_.append(local)
                    local_cpus.append(local_cpu)
                    for load in loads:
                        cpu_before = server_cpu_seconds(server)
                        rate, answered, not_accepted = http_rate(
                            server, first, per_slice, slice_seconds, load
                        )
                        cpus[load].append(
                            (server_cpu_seconds(server) - cpu_before) / max(answered, 1)
                        )
                        first += per_slice
                        rates[load].append(rate)
                        refused += not_accepted
            local, local_cpu = statistics.median(locals_), statistics.median(local_cpus)
            by_load = {load: statistics.median(rates[load]) for load in loads}
            best = max(by_load, key=by_load.__getitem__)
            rate, cpu_per_verify = by_load[best], statistics.median(cpus[best])
            share = rate / local
            met = share >= TARGET_SHARE
            note = f" ({refused} not accepted)" if refused else ""
            sweep = ", ".join(f"{by_load[load]:,.0f}/s with {load}" for load in loads)
            print(
                f"  {label}, {count} worker(s): HTTP {rate:,.0f} accepted verifies/s, in-process "
                f"{local:,.0f}/s: {share:.0%}{note}; target >= {TARGET_SHARE:.0%}: "
                f"{'met' if met else 'NOT met'}"
            )
            print(f"    by requests in flight: {sweep}")
            print(
                f"    CPU per accepted verify at {best} in flight: {cpu_per_verify * 1e3:.2f} ms "
                f"in the server, {local_cpu * 1e3:.2f} ms in-process (the HTTP layer: "
                f"{(cpu_per_verify - local_cpu) * 1e3:.2f} ms)"
            )
            lines.append(
                (
                    f"{label}: HTTP accepted verifies/s, {count} worker(s)",
                    f"{rate:,.0f}/s = {share:.0%} of in-process {local:,.0f}/s, target >= 25%",
                    met,
                )
            )
    return lines


def main(argv: list[str] | None = None) -> list[tuple[str, str, bool]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args(argv)
    print(
        f"HTTP verifies through secmod serve ({os.cpu_count()} CPUs; the best of "
        "1, 2 and 4 requests in flight per worker)"
    )
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        lines += run(
            f"sqlite:///{workdir / 'bench.db'}", workdir, args.workers, args.seconds, "SQLite"
        )
        base = os.environ.get("SECMOD_TEST_DATABASE_URL")
        if base:
            with postgres_schema_url(base) as url:
                lines += run(url, workdir, args.workers, args.seconds, "PostgreSQL")
        else:
            print("  PostgreSQL: skipped (set SECMOD_TEST_DATABASE_URL to include it)")
    return lines


if __name__ == "__main__":
    main()
