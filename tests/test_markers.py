"""The fast lane's rules (tests/fast_lane.py): tests using data or server fixtures are marked slow, and a test that
is not marked slow cannot reach the real data, PostgreSQL or a broker."""

from __future__ import annotations

import ast
import socket

import psycopg
import pytest

from tests.conftest import REPO_ROOT, fresh_postgres_database, real_data_dir
from tests.fast_lane import NEEDS_DATA_OR_SERVER, broker_ports, is_fast


def _fixtures_defined_in_tests() -> set[str]:
    names: set[str] = set()
    for path in (REPO_ROOT / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            decorators = getattr(node, "decorator_list", [])
            if isinstance(node, ast.FunctionDef) and any("pytest.fixture" in ast.unparse(d) for d in decorators):
                names.add(node.name)
    return names


def test_every_listed_fixture_is_defined():
    assert NEEDS_DATA_OR_SERVER <= _fixtures_defined_in_tests()


def test_every_collected_test_that_uses_a_data_or_server_fixture_is_marked_slow(request):
    unmarked = [item.nodeid for item in request.session.items
                if NEEDS_DATA_OR_SERVER.intersection(getattr(item, "fixturenames", ())) and is_fast(item)]
    assert unmarked == []


def test_a_fast_test_cannot_read_the_real_data():
    with pytest.raises(pytest.fail.Exception, match=r"test_markers\.py::.* is not marked slow but uses the data"):
        real_data_dir()


def test_a_fast_test_cannot_make_a_postgresql_database():
    with pytest.raises(pytest.fail.Exception, match="is not marked slow but uses PostgreSQL at 127.0.0.1:"):
        with fresh_postgres_database():
            pass


def test_a_fast_test_cannot_connect_to_postgresql_through_the_library():
    from db.session import make_engine

    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    with pytest.raises(pytest.fail.Exception, match="is not marked slow but uses PostgreSQL at 127.0.0.1:5432"):
        engine.connect()
    engine.dispose()


@pytest.mark.parametrize("port", sorted(broker_ports()))
def test_a_fast_test_cannot_connect_to_a_broker(port):
    with socket.socket() as sock, pytest.raises(pytest.fail.Exception, match=f"127.0.0.1:{port} .Redis or RabbitMQ."):
        sock.connect(("127.0.0.1", port))


def test_a_fast_test_still_connects_elsewhere():
    with pytest.raises(psycopg.OperationalError):  # nothing listens on port 1: refused by the system, not the guard
        psycopg.connect("postgresql://nobody@127.0.0.1:1/none", connect_timeout=5)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.socket() as client:
            client.connect(server.getsockname())
