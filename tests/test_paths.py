"""A path is a path: the file litemq opens, creates, migrates or downgrades is exactly the file named. Nothing in a
name is parsed as a URL (no ``?`` query, no ``#`` fragment, no ``%xx`` decoding), on the fast path or in Alembic."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import pytest

import litemq
from litemq import cli
from litemq.store import resolve_path
from litemq.store import migrate

AWKWARD_NAMES = ["app?v2.db", "a#frag.db", "data%41.db", "with space.db", "ünïcødé-日本.db", "q?mode=ro&cache=shared"]


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def entries(directory: Path) -> set[str]:
    return set(os.listdir(directory))


def only_files_of(name: str, created: set[str]) -> set[str]:
    """What was created that is not the named file or one of its companions (-wal, -shm, -journal, -litemq/)."""
    return {entry for entry in created if entry != name and not entry.startswith(name + "-")}


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_connect_creates_exactly_the_named_file(tmp_path: Path, name: str) -> None:
    (tmp_path / "app").write_bytes(b"")  # what 'app?v2.db' was once parsed into: it must stay untouched
    before = entries(tmp_path)
    with litemq.connect(str(tmp_path / name)) as conn:
        conn.declare_queue("jobs")
        conn.publish("", "jobs", b"kept")
    created = entries(tmp_path) - before
    assert name in created
    assert only_files_of(name, created) == set()
    assert (tmp_path / "app").read_bytes() == b""
    assert "litemq_queues" in tables(tmp_path / name)
    with litemq.connect(str(tmp_path / name)) as again:
        assert again.get("jobs").body == b"kept"


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_an_sqlite_url_names_its_path_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_path(f"sqlite:///{name}") == str(tmp_path / name)
    assert resolve_path(f"sqlite:///{tmp_path / name}") == str(tmp_path / name)


def test_sqlite_url_with_three_slashes_is_relative_and_with_four_absolute(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with litemq.connect("sqlite:///rel.db") as conn:
        conn.declare_queue("q")
    assert "litemq_queues" in tables(work / "rel.db")
    absolute = tmp_path / "abs.db"
    with litemq.connect(f"sqlite:///{absolute}") as conn:  # sqlite:////tmp/.../abs.db
        conn.declare_queue("q")
    assert "litemq_queues" in tables(absolute)
    assert not (work / str(absolute).lstrip("/")).exists()


def test_pika_url_parameters_name_the_file_verbatim(tmp_path: Path) -> None:
    from litemq import pika

    path = tmp_path / "app?v2.db"
    connection = pika.BlockingConnection(pika.URLParameters(f"sqlite:///{path}"))
    connection.channel().queue_declare("hello")
    connection.close()
    assert "litemq_queues" in tables(path)
    assert not (tmp_path / "app").exists()


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_migrations_upgrade_and_downgrade_exactly_the_named_file(tmp_path: Path, name: str) -> None:
    decoded = tmp_path / "dataA.db"  # what 'data%41.db' decodes to: a litemq file with a message, left alone
    with litemq.connect(str(decoded)) as conn:
        conn.declare_queue("precious")
        conn.publish("", "precious", b"do not lose me")
    before = {entry: (tmp_path / entry).stat().st_mtime_ns for entry in entries(tmp_path)}
    path = str(tmp_path / name)
    assert migrate.upgrade(path, "0001") is True
    assert migrate.current_revision(path) == "0001"
    assert migrate.upgrade(path) is True
    assert "litemq_messages" in tables(Path(path))
    assert migrate.upgrade(path, "base") is True
    assert migrate.current_revision(path) is None
    assert "litemq_queues" not in tables(Path(path))
    assert only_files_of(name, entries(tmp_path) - set(before)) == set()
    assert {entry: (tmp_path / entry).stat().st_mtime_ns for entry in before} == before
    with litemq.connect(str(decoded)) as conn:
        assert conn.get("precious").body == b"do not lose me"


def test_cli_downgrade_of_a_percent_name_leaves_the_decoded_name_alone(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITEMQ_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    with litemq.connect("dataA.db") as conn:
        conn.declare_queue("precious")
        conn.publish("", "precious", b"do not lose me")
    litemq.connect("data%41.db").close()
    assert cli.main(["--db", "data%41.db", "db", "downgrade", "base"]) == 0
    assert "litemq_queues" not in tables(tmp_path / "data%41.db")
    with litemq.connect("dataA.db") as conn:
        assert conn.get("precious").body == b"do not lose me"


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_cli_reads_exactly_the_named_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], name: str) -> None:
    monkeypatch.delenv("LITEMQ_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    with litemq.connect(name) as conn:
        conn.declare_queue("only-in-" + name)
    capsys.readouterr()
    assert cli.main(["--db", name, "queues"]) == 0
    assert "only-in-" + name in capsys.readouterr().out
