"""The results store: one SQLite row per experiment cell.

A cell is one ``(encoder, reference, target, fraction, seed, estimator)`` combination;
its row holds the estimator's ``value`` (a float), an ``extra`` JSON object (the
decomposition terms, a loss, a pick...), the ``seconds`` the cell took, a UTC
``timestamp``, the package ``versions`` that produced it and a ``digest`` of
everything else that determined the value (the config options, task specs and
fine-tuning settings the cell read; :func:`taskrel.experiments.digest.cell_digest`).

The database is in WAL mode and every :meth:`ResultsStore.put` is its own transaction,
so a run killed at any moment leaves every row committed before the kill intact, and a
rerun of the grid computes only the cells that are missing or whose row has another
digest (:meth:`ResultsStore.missing`). A row without a digest (written by taskrel
before digests were recorded, or by a grid run without one) is kept as it is.

Concurrent runs on one store *claim* a cell before computing it
(:meth:`ResultsStore.claim`, one transaction: a cell that has a fresh row or a live
claim of another run is not claimed), and a written row releases its claim. A claim
whose process is gone (same host, pid not alive or reused) or that is older than
``claim_timeout`` is taken over.

Examples
--------
>>> import tempfile, os
>>> from taskrel.experiments.store import Cell, ResultsStore
>>> path = os.path.join(tempfile.mkdtemp(), "results.sqlite")
>>> key = Cell("smallcnn", "fashion_mnist", "digits", 1.0, 0, "task_relatedness")
>>> with ResultsStore(path) as store:
...     store.put(key, 1.25, extra={"label_mismatch": 0.1}, seconds=2.0)
...     store.has(key), store.get(key)["extra"]["label_mismatch"]
(True, 0.1)
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from .._internal import versions
from .._internal.serialize import atomic_write_text, csv_text, to_jsonable
from ..exceptions import TaskrelInputError

__all__ = ["Cell", "ResultsStore", "COLUMNS", "CLAIM_TIMEOUT", "package_versions",
           "export_rows", "as_cell"]

#: The key columns, in order.
KEY_COLUMNS = ("encoder", "reference", "target", "fraction", "seed", "estimator")
#: Every column of a row, as :meth:`ResultsStore.query` returns it.
COLUMNS = KEY_COLUMNS + ("value", "extra", "seconds", "timestamp", "versions", "digest")
#: The columns of a store written before rows had a digest (read as ``digest=None``).
_LEGACY_COLUMNS = COLUMNS[:-1]
#: Seconds after which a claim is taken over even when its owner cannot be checked
#: (another host): longer than any cell of the suites takes.
CLAIM_TIMEOUT = 12 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    encoder   TEXT    NOT NULL,
    reference TEXT    NOT NULL,
    target    TEXT    NOT NULL,
    fraction  REAL    NOT NULL,
    seed      INTEGER NOT NULL,
    estimator TEXT    NOT NULL,
    value     REAL,
    extra     TEXT    NOT NULL DEFAULT '{}',
    seconds   REAL,
    timestamp TEXT    NOT NULL,
    versions  TEXT    NOT NULL DEFAULT '{}',
    digest    TEXT,
    PRIMARY KEY (encoder, reference, target, fraction, seed, estimator)
)
"""

_CLAIMS = """
CREATE TABLE IF NOT EXISTS claims (
    encoder    TEXT    NOT NULL,
    reference  TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    fraction   REAL    NOT NULL,
    seed       INTEGER NOT NULL,
    estimator  TEXT    NOT NULL,
    host       TEXT    NOT NULL,
    pid        INTEGER NOT NULL,
    started    TEXT    NOT NULL,
    run        TEXT    NOT NULL,
    claimed_at REAL    NOT NULL,
    PRIMARY KEY (encoder, reference, target, fraction, seed, estimator)
)
"""
_CLAIM_COLUMNS = ("host", "pid", "started", "run", "claimed_at")
_WHERE_KEY = " AND ".join(f"{k}=?" for k in KEY_COLUMNS)

_PACKAGES = ("taskrel", "numpy", "scipy", "torch", "scikit-learn", "pot")


@dataclass(frozen=True, order=True)
class Cell:
    """The key of one experiment cell (and of one row of the store).

    ``fraction`` is the share of the target's training data the estimator sees
    (1.0 = all of it); ``estimator`` is a score name (``"task_relatedness"``,
    ``"logme"``...) or a ground truth (``"linear_probe"``, ``"finetune"``).
    """

    encoder: str
    reference: str
    target: str
    fraction: float
    seed: int
    estimator: str

    def __post_init__(self) -> None:
        for f in ("encoder", "reference", "target", "estimator"):
            v = getattr(self, f)
            if not isinstance(v, str) or not v:
                raise TaskrelInputError(f"`{f}` must be a non-empty string; got {v!r}")
        fr = self.fraction
        if (isinstance(fr, bool) or not isinstance(fr, (int, float))
                or not (0 < float(fr) <= 1)):
            raise TaskrelInputError(f"`fraction` must be a number in (0, 1]; got {fr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TaskrelInputError(f"`seed` must be an integer; got {self.seed!r}")
        object.__setattr__(self, "fraction", float(fr))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def package_versions() -> dict[str, str | None]:
    """Versions of Python and of the installed packages that shape the numbers."""
    return versions.package_versions(_PACKAGES, skip_missing=True)


def as_cell(key: Any) -> Cell:
    """A store key as a :class:`Cell`: a Cell, a 6-tuple, or a mapping (a row) holding
    the key columns."""
    if isinstance(key, Cell):
        return key
    if isinstance(key, Mapping):
        missing = [c for c in KEY_COLUMNS if c not in key]
        if missing:
            raise TaskrelInputError(f"`key` is missing {missing}; got keys {sorted(key)}")
        return Cell(**{c: key[c] for c in KEY_COLUMNS})
    if isinstance(key, tuple) and len(key) == len(KEY_COLUMNS):
        return Cell(*key)
    raise TaskrelInputError(
        f"`key` must be a Cell, a 6-tuple or a mapping with {KEY_COLUMNS}; got {key!r}"
    )


def _float_or_none(v: Any, name: str) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TaskrelInputError(f"`{name}` must be a number or None; got {v!r}") from None
    return f if math.isfinite(f) else None


class ResultsStore:
    """An embedded SQLite results store (see the module docstring).

    Parameters
    ----------
    path : str or PathLike
        The database file; created (with its folder) if missing. A store written
        before rows had a digest gets the ``digest`` column (its rows keep NULL).
    timeout : float
        Seconds to wait for a lock held by another process.
    readonly : bool
        Open with SQLite's ``mode=ro``: the file is never written; it must hold our
        ``cells`` table.
    claim_timeout : float
        Seconds after which another run's claim on a cell is taken over even when
        its process cannot be checked (default :data:`CLAIM_TIMEOUT`, 12 hours).
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0,
                 readonly: bool = False, claim_timeout: float = CLAIM_TIMEOUT) -> None:
        p = Path(path)
        if p.exists() and p.is_dir():
            raise TaskrelInputError(f"`path` must be a database file; {str(p)!r} is a folder")
        ct = claim_timeout
        if isinstance(ct, bool) or not isinstance(ct, (int, float)) or not ct > 0:
            raise TaskrelInputError(
                f"`claim_timeout` must be a positive number of seconds; got {ct!r}")
        self.path = str(p)
        self.claim_timeout = float(claim_timeout)
        self._versions = json.dumps(package_versions(), sort_keys=True)
        self._run = uuid.uuid4().hex
        if readonly:
            self._con, self._columns = _connect_readonly(p, timeout)
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.execute(_SCHEMA)
            self._columns = _upgrade(self._con, self.path)
            self._con.execute(_CLAIMS)
        except sqlite3.DatabaseError as exc:
            raise TaskrelInputError(
                f"`path` {self.path!r} is not a taskrel results database ({exc})"
            ) from None

    # -- lifetime -----------------------------------------------------------------
    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._con.execute("SELECT COUNT(*) FROM cells").fetchone()[0])

    def __repr__(self) -> str:
        return f"ResultsStore({self.path!r}, rows={len(self)})"

    # -- cells --------------------------------------------------------------------
    def has(self, key: Cell | Mapping[str, Any] | tuple[Any, ...]) -> bool:
        """True when the cell's row exists (whatever its digest)."""
        c = as_cell(key)
        row = self._con.execute(f"SELECT 1 FROM cells WHERE {_WHERE_KEY}",
                                astuple(c)).fetchone()
        return row is not None

    def keys(self) -> set[Cell]:
        """The keys of every row."""
        cur = self._con.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM cells")
        return {Cell(*r) for r in cur.fetchall()}

    def digests(self) -> dict[Cell, str | None]:
        """Every row's key and digest (None for a row written without one)."""
        if "digest" not in self._columns:
            return dict.fromkeys(self.keys())
        cur = self._con.execute(f"SELECT {', '.join(KEY_COLUMNS)}, digest FROM cells")
        return {Cell(*r[:-1]): r[-1] for r in cur.fetchall()}

    def missing(self, wanted: Mapping[Cell, str | None]
                ) -> tuple[list[Cell], list[Cell], list[Cell]]:
        """Which of the ``wanted`` cells (key -> digest, None: any row will do) a run
        must compute.

        Returns ``(todo, stale, legacy)``: ``todo`` the cells without a row or whose
        row has another digest, in the order given; ``stale`` those of ``todo`` that
        have a row (it will be replaced); ``legacy`` the cells kept although their
        row has no digest to compare (see the module docstring).
        """
        have = self.digests()
        todo, stale, legacy = [], [], []
        for c, want in wanted.items():
            if c not in have:
                todo.append(c)
            elif not _fresh(have[c], want):
                todo.append(c)
                stale.append(c)
            elif want is not None and have[c] is None:
                legacy.append(c)
        return todo, stale, legacy

    def put(
        self,
        key: Cell | Mapping[str, Any] | tuple[Any, ...],
        value: float | None,
        *,
        extra: Mapping[str, Any] | None = None,
        seconds: float | None = None,
        digest: str | None = None,
    ) -> None:
        """Write one cell in its own transaction (replacing an existing row) and
        release every claim on it.

        ``value`` NaN/inf and None are stored as NULL; ``extra`` must be JSON-able;
        ``digest`` is what determined the value (:meth:`missing` compares it).
        """
        c = as_cell(key)
        val = _float_or_none(value, "value")
        sec = _float_or_none(seconds, "seconds")
        if extra is not None and not isinstance(extra, Mapping):
            raise TaskrelInputError(f"`extra` must be a mapping or None; got {type(extra).__name__}")
        if digest is not None and not isinstance(digest, str):
            raise TaskrelInputError(f"`digest` must be a string or None; got {digest!r}")
        try:
            extra_s = json.dumps(dict(extra or {}), sort_keys=True, allow_nan=False,
                                 default=_json_default)
        except (TypeError, ValueError) as exc:
            raise TaskrelInputError(f"`extra` must be JSON-serializable: {exc}") from None
        stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with self._con:  # BEGIN ... COMMIT (ROLLBACK on error)
            self._con.execute("BEGIN IMMEDIATE")
            self._con.execute(
                f"INSERT OR REPLACE INTO cells ({', '.join(COLUMNS)}) "
                f"VALUES ({','.join('?' * len(COLUMNS))})",
                (*astuple(c), val, extra_s, sec, stamp, self._versions, digest),
            )
            self._con.execute(f"DELETE FROM claims WHERE {_WHERE_KEY}", astuple(c))

    # -- claims (concurrent runs) -----------------------------------------------
    def claim(self, key: Cell | Mapping[str, Any] | tuple[Any, ...],
              digest: str | None = None) -> str:
        """Claim a cell for this store object's run, in one transaction.

        Returns ``"done"`` when the cell has a fresh row (its digest is ``digest``,
        or either is None), ``"busy"`` when another run holds a live claim on it,
        and ``"claimed"`` otherwise (a claim of a dead process, or one older than
        ``claim_timeout``, is taken over). :meth:`put` releases the claim.
        """
        c = as_cell(key)
        k = astuple(c)
        me = _owner(self._run)
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            row = self._con.execute(f"SELECT digest FROM cells WHERE {_WHERE_KEY}",
                                    k).fetchone()
            if row is not None and _fresh(row[0], digest):
                return "done"
            held = self._con.execute(
                f"SELECT {', '.join(_CLAIM_COLUMNS)} FROM claims WHERE {_WHERE_KEY}",
                k).fetchone()
            if held is not None and _claim_alive(dict(zip(_CLAIM_COLUMNS, held)), me,
                                                 self.claim_timeout):
                return "busy"
            self._con.execute(
                f"INSERT OR REPLACE INTO claims VALUES ({','.join('?' * 11)})",
                (*k, me["host"], me["pid"], me["started"], me["run"], time.time()))
        return "claimed"

    def release(self, keys: Iterable[Cell | Mapping[str, Any] | tuple[Any, ...]]
                | None = None) -> None:
        """Drop this run's claims on ``keys`` (default: all of them)."""
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            if keys is None:
                self._con.execute("DELETE FROM claims WHERE run=?", (self._run,))
                return
            for key in keys:
                self._con.execute(f"DELETE FROM claims WHERE {_WHERE_KEY} AND run=?",
                                  (*astuple(as_cell(key)), self._run))

    def claims(self) -> list[dict[str, Any]]:
        """Every claim held now: the cell's key columns and its owner (``host``,
        ``pid``, ``started``: the process's start, ``run``, ``claimed_at``: Unix
        seconds)."""
        cols = KEY_COLUMNS + _CLAIM_COLUMNS
        try:
            rows = self._con.execute(f"SELECT {', '.join(cols)} FROM claims").fetchall()
        except sqlite3.OperationalError:  # a read-only store written before claims
            return []
        return [dict(zip(cols, r)) for r in rows]

    def get(self, key: Cell | Mapping[str, Any] | tuple[Any, ...]) -> dict[str, Any] | None:
        """The cell's row as a dict, or None."""
        c = as_cell(key)
        rows = self.query(**c.as_dict())
        return rows[0] if rows else None

    def query(self, **where: Any) -> list[dict[str, Any]]:
        """Rows matching every given column (a value, or a list/tuple/set of values).

        ``extra`` and ``versions`` come back decoded; rows are sorted by key.

        >>> ResultsStore(":memory:").query(estimator="finetune")
        []
        """
        bad = [k for k in where if k not in KEY_COLUMNS]
        if bad:
            raise TaskrelInputError(
                f"query columns must be among {KEY_COLUMNS}; got {bad}"
            )
        clauses, params = [], []
        for k, v in where.items():
            if isinstance(v, (list, tuple, set, frozenset)):
                vs = list(v)
                if not vs:
                    return []
                clauses.append(f"{k} IN ({','.join('?' * len(vs))})")
                params.extend(float(x) if k == "fraction" else x for x in vs)
            else:
                clauses.append(f"{k}=?")
                params.append(float(v) if k == "fraction" else v)
        sql = f"SELECT {', '.join(self._columns)} FROM cells"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY " + ", ".join(KEY_COLUMNS)
        out = []
        for r in self._con.execute(sql, params).fetchall():
            d = dict.fromkeys(COLUMNS)
            d.update(zip(self._columns, r))
            d["extra"] = json.loads(d["extra"])
            d["versions"] = json.loads(d["versions"])
            out.append(d)
        return out

    # -- export -------------------------------------------------------------------
    def export(self, path: str | os.PathLike[str]) -> int:
        """Write every row to ``.csv`` or ``.parquet`` (atomically); return the row count.

        ``extra`` and ``versions`` are written as JSON strings. Parquet needs pyarrow.
        """
        return export_rows(self.query(), path)


def _fresh(have: str | None, want: str | None) -> bool:
    """Whether a row with digest ``have`` stands for a cell wanted with ``want``:
    the same digest, or either unknown (None: a legacy row is kept)."""
    return have is None or want is None or have == want


def _upgrade(con: sqlite3.Connection, path: str) -> tuple[str, ...]:
    """Our ``cells`` columns (adding ``digest`` to a store written before it);
    another program's ``cells`` table is refused. One transaction, so that two
    processes opening an old store do not both add the column."""
    with con:
        con.execute("BEGIN IMMEDIATE")
        cols = tuple(r[1] for r in con.execute("PRAGMA table_info(cells)").fetchall())
        if cols == _LEGACY_COLUMNS:
            con.execute("ALTER TABLE cells ADD COLUMN digest TEXT")
            return COLUMNS
    if cols != COLUMNS:
        raise TaskrelInputError(
            f"`path` {path!r} is not a taskrel results database: it has a 'cells' "
            f"table with columns {list(cols)}")
    return COLUMNS


def _process_start(pid: int) -> str:
    """The start time of process ``pid`` (clock ticks since boot, from
    ``/proc/<pid>/stat``), which tells a reused pid apart; ``""`` where there is no
    ``/proc``; ``"zombie"`` for a process that has exited but not been reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields_ = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "zombie" if fields_[0] in ("Z", "X") else fields_[19]


def _owner(run: str) -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _process_start(pid),
            "run": run}


def _claim_alive(held: Mapping[str, Any], me: Mapping[str, Any], timeout: float) -> bool:
    """Whether another run's claim still stands: not older than ``timeout`` and not
    ours, and, on this host, its process still running (the same process, by its
    start time, not a new one that reuses its pid)."""
    if time.time() - float(held["claimed_at"]) > timeout or held["run"] == me["run"]:
        return False
    if held["host"] != me["host"]:
        return True  # another machine: only the timeout can tell
    pid = int(held["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    now = _process_start(pid)
    return now != "zombie" and (not now or not held["started"] or now == held["started"])


def _connect_readonly(p: Path, timeout: float
                      ) -> tuple[sqlite3.Connection, tuple[str, ...]]:
    """A read-only connection (``mode=ro``: the file is never written, its journal
    mode never changed) to a file that must hold our ``cells`` table, and its
    columns (a store written before rows had a digest lacks ``digest``)."""
    from urllib.parse import quote

    if not p.is_file():
        raise TaskrelInputError(f"results database {str(p)!r} does not exist")
    con = sqlite3.connect(f"file:{quote(str(p.absolute()))}?mode=ro", uri=True,
                          timeout=timeout, isolation_level=None)
    try:
        cols = tuple(r[1] for r in con.execute("PRAGMA table_info(cells)").fetchall())
    except sqlite3.DatabaseError as exc:
        con.close()
        raise TaskrelInputError(
            f"{str(p)!r} is not a taskrel results database ({exc})") from None
    if cols not in (COLUMNS, _LEGACY_COLUMNS):
        con.close()
        got = f"a 'cells' table with columns {list(cols)}" if cols else "no 'cells' table"
        raise TaskrelInputError(
            f"{str(p)!r} is not a taskrel results database: it has {got}")
    return con, cols


def _json_default(o: Any) -> Any:
    """What ``json.dumps`` cannot write itself: numpy arrays (whole) and scalars,
    through :func:`taskrel._internal.serialize.to_jsonable`."""
    out = to_jsonable(o)
    if out is o:
        raise TypeError(f"object of type {type(o).__name__} is not JSON serializable")
    return out


def _flat(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = dict(r)
        for k in ("extra", "versions"):
            if not isinstance(d.get(k), str):
                d[k] = json.dumps(d.get(k) or {}, sort_keys=True)
        out.append(d)
    return out


def export_rows(rows: list[Mapping[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write store rows to CSV or Parquet, chosen by the suffix of ``path``."""
    p = Path(path)
    suffix = p.suffix.lower()
    flat = _flat(rows)
    if suffix == ".csv":
        atomic_write_text(p, csv_text(flat, COLUMNS))
    elif suffix in (".parquet", ".pq"):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise TaskrelInputError(
                "writing Parquet needs pyarrow: `pip install pyarrow` (or export to .csv)"
            ) from None
        table = pa.Table.from_pylist([{k: r.get(k) for k in COLUMNS} for r in flat])
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, p)
    else:
        raise TaskrelInputError(
            f"`path` must end in .csv or .parquet; got {str(p)!r}"
        )
    return len(flat)
