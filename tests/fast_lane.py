"""What keeps the fast lane (`pytest -m "not slow"`, `make test-fast`) free of real data and servers.

Two rules, wired up in tests/conftest.py:

- At collection, a test that uses one of NEEDS_DATA_OR_SERVER, directly or through other fixtures, is marked slow.
- While a test that is not marked slow runs, reading the real data dir or connecting to PostgreSQL, Redis or
  RabbitMQ (by their ports) fails the test, naming what it reached; that catches what the fixture list cannot see
  (request.getfixturevalue, a helper called from a test's body, a library call that opens a connection).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

# Fixtures that read data under FER_DATA_DIR or connect to a server. Fixtures chosen at run time by a parameter
# (database_url's "postgresql", test_scale.py's archive, test_sql_docs.py's database) mark those parameters slow
# where they are defined.
NEEDS_DATA_OR_SERVER = frozenset({
    "photos_dir",          # the real photos under FER_DATA_DIR
    "fer2013_dir",         # FER2013 under FER_DATA_DIR
    "sample_archive",      # built from the real photos
    "annotated_sqlite",    # a `fer annotate` run over sample_archive
    "postgres_url",        # a database on the real PostgreSQL
    "postgres_annotated",  # test_sql_docs.py: an annotation run on PostgreSQL
    "broker",              # test_failures.py, test_pipeline.py: the test Redis; test_faults.py: a private redis-server
    "private_redis",       # test_faults.py: a redis-server started for the tests
})

SLOW = pytest.mark.slow


def mark_slow_what_needs_data_or_servers(items: list[pytest.Item]) -> None:
    for item in items:
        if NEEDS_DATA_OR_SERVER.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(SLOW)


def is_fast(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is None


class FastLaneGuard:
    """Knows the test that is running; refuses it data and servers unless it is marked slow."""

    def __init__(self) -> None:
        self.running: pytest.Item | None = None

    @contextmanager
    def watching(self, item: pytest.Item) -> Iterator[None]:
        """While ``item`` runs (its fixtures' setup and teardown included)."""
        self.running = item
        with pytest.MonkeyPatch.context() as patch:
            if is_fast(item):
                patch.setattr(socket.socket, "connect", self._guarded_socket(socket.socket.connect))
                patch.setattr(psycopg, "connect", self._guarded_postgres(psycopg.connect))
            try:
                yield
            finally:
                self.running = None

    def refuse_unless_slow(self, what: str) -> None:
        if self.running is not None and is_fast(self.running):
            pytest.fail(f"{self.running.nodeid} is not marked slow but uses {what}: mark it slow, or add the fixture "
                        "that reaches it to NEEDS_DATA_OR_SERVER in tests/fast_lane.py", pytrace=False)

    def _guarded_socket(self, connect: Callable) -> Callable:
        def guarded_connect(sock: socket.socket, address) -> None:
            if isinstance(address, tuple) and len(address) >= 2 and address[1] in broker_ports():
                self.refuse_unless_slow(f"a server at {address[0]}:{address[1]} (Redis or RabbitMQ)")
            return connect(sock, address)

        return guarded_connect

    def _guarded_postgres(self, connect: Callable) -> Callable:
        # libpq opens its own sockets, out of the socket guard's sight: the driver's connect is where to look.
        def guarded_connect(conninfo: str = "", **kwargs):
            parameters = conninfo_to_dict(conninfo, **kwargs)
            port = int(str(parameters.get("port") or os.environ.get("PGPORT") or 5432).split(",")[0])
            if port in postgres_ports():
                self.refuse_unless_slow(f"PostgreSQL at {parameters.get('host', 'localhost')}:{port}")
            return connect(conninfo, **kwargs)

        return guarded_connect


def broker_ports() -> frozenset[int]:
    """Redis's and RabbitMQ's ports, and those of the brokers the tests are pointed at."""
    return frozenset({6379, 5672} | _ports_in("FER_TEST_BROKER_URL", "FER_TEST_SCHEDULE_BROKER_URL"))


def postgres_ports() -> frozenset[int]:
    """PostgreSQL's port, and that of the server the tests are pointed at."""
    return frozenset({5432} | _ports_in("FER_TEST_POSTGRES_URL"))


def _ports_in(*variables: str) -> set[int]:
    urls = (os.environ.get(variable) for variable in variables)
    return {urlsplit(url).port for url in urls if url and urlsplit(url).port}


GUARD = FastLaneGuard()
