"""`zapstream export`: Parquet files that read back with DuckDB to the same rows, whether
the file is free (DuckDB's COPY on a read-only connection) or held by a sink (rows
streamed as Arrow through the sink's `/export`). No broker needed: the holder is the
sink's own `Loader` and HTTP app in another process (tests/support/held_file.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from typer.testing import CliRunner

from tests.support.analytics_seed import seed
from zapstream.brokers.process import free_port, stop_process
from zapstream.cli import cli


def _rows(con: duckdb.DuckDBPyConnection, source: str) -> list[tuple[Any, ...]]:
    return sorted(con.execute(f"SELECT * FROM {source}").fetchall(), key=repr)


def _table_rows(db: Path, table: str, where: str = "") -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return _rows(con, f'"{table}" {where}')
    finally:
        con.close()


def _parquet_rows(path: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    try:
        return _rows(con, f"read_parquet('{path}')")
    finally:
        con.close()


def _all_tables(db: Path) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' AND table_type = 'BASE TABLE'"
            ).fetchall()
        ]
    finally:
        con.close()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "z.duckdb"
    seed(path)
    monkeypatch.setenv("DUCKDB_PATH", str(path))
    monkeypatch.setenv("SINK_WEB_PORT", str(free_port()))  # no sink there
    return path


def _export(*args: str) -> Any:
    return CliRunner().invoke(cli, ["export", *args])


def _check_every_table(db: Path, folder: Path) -> None:
    names = _all_tables(db)
    assert sorted(p.stem for p in folder.glob("*.parquet")) == sorted(names)
    for name in names:
        assert _parquet_rows(folder / f"{name}.parquet") == _table_rows(db, name), name


def test_a_table_exports_to_parquet_that_reads_back_to_the_same_rows(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "turns.parquet"
    got = _export("turns", "--out", str(out))
    assert got.exit_code == 0, got.output
    assert "turns: 6 rows" in got.output
    assert _parquet_rows(out) == _table_rows(db, "turns")
    assert not list(out.parent.glob(".*.part"))


def test_from_and_to_filter_on_the_tables_time_column(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "messages.parquet"
    got = _export("messages", "--out", str(out), "--from", "2026-11-02", "--to", "2026-11-03")
    assert got.exit_code == 0, got.output
    rows = _parquet_rows(out)
    assert len(rows) == 6  # mx (before) and my (at the excluded end) left out
    assert rows == _table_rows(
        db,
        "messages",
        "WHERE received_at >= TIMESTAMPTZ '2026-11-02 00:00:00+00' "
        "AND received_at < TIMESTAMPTZ '2026-11-03 00:00:00+00'",
    )


def test_all_writes_every_table_into_a_folder(db: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dump"
    got = _export("--all", "--out", str(folder))
    assert got.exit_code == 0, got.output
    _check_every_table(db, folder)


def test_an_unknown_table_is_a_clear_error_and_a_nonzero_exit(db: Path, tmp_path: Path) -> None:
    got = _export("nope", "--out", str(tmp_path / "x.parquet"))
    assert got.exit_code != 0
    assert "no table 'nope'" in got.output
    assert "messages" in got.output  # the tables that do exist are listed
    assert not (tmp_path / "x.parquet").exists()
    assert _export("--out", str(tmp_path / "x.parquet")).exit_code == 2  # neither TABLE nor --all


class Holder:
    """The seeded file held by a sink-like process serving /query and /export."""

    def __init__(self, db: Path, port: int) -> None:
        self.db = db
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.held_file", str(db), str(port)],
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().startswith(b"holding"), "the holder did not start"

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)


@pytest.fixture
def held(db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Holder]:
    port = free_port()
    monkeypatch.setenv("SINK_WEB_PORT", str(port))
    holder = Holder(db, port)
    try:
        yield holder
    finally:
        holder.stop()


def test_export_goes_through_the_sink_while_it_holds_the_file(held: Holder, tmp_path: Path) -> None:
    with pytest.raises(duckdb.IOException):  # the lock is real: no read-only open either
        duckdb.connect(str(held.db), read_only=True)
    out = tmp_path / "statuses.parquet"
    got = _export("statuses", "--out", str(out), "--from", "2026-11-02", "--to", "2026-11-03")
    assert got.exit_code == 0, got.output
    folder = tmp_path / "dump"
    got = _export("--all", "--out", str(folder))
    assert got.exit_code == 0, got.output
    bad = _export("nope", "--out", str(tmp_path / "x.parquet"))
    assert bad.exit_code != 0
    assert "no table 'nope'" in bad.output
    refused = httpx.post(
        f"http://127.0.0.1:{held.port}/export", json={"sql": "DELETE FROM messages"}, timeout=30
    )
    assert refused.status_code == 400
    report = CliRunner().invoke(cli, ["report", "--from", "2026-11-02", "--to", "2026-11-03", "--json"])
    assert report.exit_code == 0, report.output
    assert '"messages": 6' in report.output

    held.stop()  # now the file can be read directly and compared
    direct = CliRunner().invoke(cli, ["report", "--from", "2026-11-02", "--to", "2026-11-03", "--json"])
    assert direct.exit_code == 0, direct.output
    assert json.loads(direct.output) == json.loads(report.output)  # same figures both ways
    _check_every_table(held.db, folder)
    assert _parquet_rows(out) == _table_rows(
        held.db,
        "statuses",
        "WHERE status_at >= TIMESTAMPTZ '2026-11-02 00:00:00+00' "
        "AND status_at < TIMESTAMPTZ '2026-11-03 00:00:00+00'",
    )
