"""Accepted verifies per second through ``secmod serve --workers N`` (JSON API), next to
accepted ``Host.verify`` calls per second in this process, on the same database.

    python bench/http_verifies.py [--workers 1 2 4] [--seconds 5]

Every request is a different person with the right code (each code is accepted once), so
the people are enrolled first in bulk (bench/fill.py). The load comes from client
processes on keep-alive connections; they share the machine's cores with the server, as
a reverse proxy would.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyotp

sys.path.insert(0, str(Path(__file__).parent))

from fill import fill_totp_users, secret_for, user_id  # noqa: E402

from secmod.hookspecs import Audience, User  # noqa: E402
from secmod.host import Host  # noqa: E402
from secmod.settings import load_settings  # noqa: E402
from secmod.testing import postgres_schema_url  # noqa: E402
from secmod.testing.serve import ServeProcess  # noqa: E402

TOKEN = "bench-api-token-0123456789"
CLIENTS = 3  # load-generating processes, each with a few keep-alive connections
CONNECTIONS_PER_CLIENT = 4
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


def _client(
    port: int, payloads: list[bytes], seconds: float, results: multiprocessing.Queue
) -> None:
    import threading

    accepted = other = 0
    lock = threading.Lock()
    index = [0]
    deadline = time.monotonic() + seconds
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}

    def run() -> None:
        nonlocal accepted, other
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < deadline:
            with lock:
                if index[0] >= len(payloads):
                    return
                body = payloads[index[0]]
                index[0] += 1
            connection.request("POST", "/api/v1/verify", body, headers)
            answer = connection.getresponse().read()
            with lock:
                if b'"outcome":"accepted"' in answer:
                    accepted += 1
                else:
                    other += 1
        connection.close()

    threads = [threading.Thread(target=run) for _ in range(CONNECTIONS_PER_CLIENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    results.put((accepted, other))


def http_rate(
    server: ServeProcess, first: int, count: int, seconds: float
) -> tuple[float, int, int]:
    """Accepted verifies/s over ``seconds``; returns (rate, answers, answers not accepted)."""
    payloads = bodies(first, count)
    share = len(payloads) // CLIENTS
    results: multiprocessing.Queue = multiprocessing.Queue()
    clients = [
        multiprocessing.Process(
            target=_client,
            args=(server.port, payloads[i * share : (i + 1) * share], seconds, results),
        )
        for i in range(CLIENTS)
    ]
    began = time.monotonic()
    for process in clients:
        process.start()
    totals = [results.get(timeout=seconds + 120) for _ in clients]
    elapsed = time.monotonic() - began
    for process in clients:
        process.join(30)
    accepted = sum(a for a, _ in totals)
    refused = sum(o for _, o in totals)
    return accepted / min(elapsed, seconds + 1), accepted + refused, refused


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
    per_slice = int(slice_seconds * 3000) + 500  # more people than the fastest slice can use
    local_slice = 700
    needed = (local_slice + per_slice) * rounds * len(workers)
    lines = []
    with Host(load_settings(config)) as host:
        took = fill_totp_users(host, needed)
        print(f"  {label}: enrolled {needed:,} people in {took:.1f} s")
        first = 0
        for count in workers:
            with ServeProcess(
                config, workers=count, log_file=workdir / f"serve-{label}-{count}.log"
            ) as server:
                # In-process and HTTP take turns, so a busy machine weighs on both alike;
                # the medians of the rounds are compared.
                locals_, local_cpus, rates, cpus = [], [], [], []
                refused = 0
                for _ in range(rounds):
                    local, local_cpu = in_process_rate(host, first, local_slice)
                    first += local_slice
                    cpu_before = server_cpu_seconds(server)
                    rate, answered, not_accepted = http_rate(
                        server, first, per_slice, slice_seconds
                    )
                    cpus.append((server_cpu_seconds(server) - cpu_before) / max(answered, 1))
                    first += per_slice
                    locals_.append(local)
                    local_cpus.append(local_cpu)
                    rates.append(rate)
                    refused += not_accepted
            local, local_cpu = statistics.median(locals_), statistics.median(local_cpus)
            rate, cpu_per_verify = statistics.median(rates), statistics.median(cpus)
            share = rate / local
            met = share >= TARGET_SHARE
            note = f" ({refused} not accepted)" if refused else ""
            print(
                f"  {label}, {count} worker(s): HTTP {rate:,.0f} accepted verifies/s, in-process "
                f"{local:,.0f}/s: {share:.0%}{note}; target >= {TARGET_SHARE:.0%}: "
                f"{'met' if met else 'NOT met'}"
            )
            print(
                f"    CPU per accepted verify: {cpu_per_verify * 1e3:.2f} ms in the server, "
                f"{local_cpu * 1e3:.2f} ms in-process (the HTTP layer: "
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
    print(f"HTTP verifies through secmod serve ({os.cpu_count()} CPUs, {CLIENTS} client processes)")
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
