"""Which file a URL names: ``sqlite:///rel/path.db`` is relative to the working directory, as in SQLAlchemy;
``sqlite:////abs/path.db`` (four slashes) is absolute; a plain path is a path."""

from __future__ import annotations

from pathlib import Path

import pytest

import litemq
from litemq import pika


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "rel").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LITEMQ_URL", raising=False)
    return tmp_path


def test_three_slashes_name_a_path_relative_to_the_working_directory(workdir: Path) -> None:
    with litemq.connect("sqlite:///rel/mq.db") as conn:
        assert conn.path == str(workdir / "rel" / "mq.db")
    assert (workdir / "rel" / "mq.db").is_file()


def test_four_slashes_name_an_absolute_path(workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    with litemq.connect(f"sqlite:///{elsewhere}/mq.db") as conn:  # sqlite:// + /tmp/.../mq.db
        assert conn.path == str(elsewhere / "mq.db")
    assert (elsewhere / "mq.db").is_file()
    assert not list(workdir.rglob("mq.db"))


def test_a_plain_path_and_a_path_object_open_that_file(workdir: Path) -> None:
    with litemq.connect("rel/plain.db") as conn:
        assert conn.path == str(workdir / "rel" / "plain.db")
    with litemq.connect(workdir / "rel" / "object.db") as conn:
        assert conn.path == str(workdir / "rel" / "object.db")


def test_pika_url_parameters_read_sqlite_urls_the_same_way(workdir: Path) -> None:
    assert pika.URLParameters("sqlite:///rel/mq.db").path == str(workdir / "rel" / "mq.db")
    assert pika.URLParameters(f"sqlite:///{workdir}/abs.db").path == str(workdir / "abs.db")
