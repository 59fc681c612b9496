"""A process whose catalog is SQLite never imports a PostgreSQL driver (~0.18 s each)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import python


def test_a_command_on_a_sqlite_catalog_imports_no_postgresql_driver(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "a.png").write_bytes(b"a")
    args = ["scan", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--root", f"r={tmp_path / 'r'}"]
    code = (
        "import contextlib, io, sys\n"
        "from assetd.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main({args!r}) == 0\n"
        "print('peewee' in sys.modules, sys.modules.get('psycopg'))\n"
    )
    assert python(code) == "True None"  # the catalog was opened, without the driver


def test_hidden_drivers_stay_hidden_in_worker_processes_and_refuse_postgresql() -> None:
    code = (
        "from assetd import drivers\n"
        "drivers.sqlite_only('sqlite:////tmp/x.db')\n"
        "from assetd.procs import Processes\n"
        "from assetd.db import Catalog\n"
        "from assetd.exceptions import CatalogError\n"
        "procs = Processes(1)\n"
        "print(procs.call('assetd.drivers:kept_out'))\n"
        "procs.close()\n"
        "try:\n"
        "    Catalog('postgresql://u@localhost/x')\n"
        "except CatalogError as exc:\n"
        "    print(exc)\n"
    )
    worker, refusal = python(code).splitlines()
    assert worker == "True"
    assert "started for a SQLite catalog" in refusal


def test_a_postgresql_url_or_an_imported_peewee_keeps_the_drivers() -> None:
    code = (
        "import sys\n"
        "from assetd import drivers\n"
        "drivers.sqlite_only('postgresql://u@db/x')\n"
        "print(drivers.kept_out())\n"
        "import peewee\n"
        "drivers.sqlite_only('sqlite:////tmp/x.db')\n"
        "print(drivers.kept_out(), peewee.psycopg is not None)\n"
    )
    assert python(code).splitlines() == ["False", "False True"]
