"""The results store: one SQLite row per experiment cell.

A cell is one ``(encoder, reference, target, fraction, seed, estimator)`` combination;
its row holds the estimator's ``value`` (a float), an ``extra`` JSON object (the
decomposition terms, a loss, a pick...), the ``seconds`` the cell took, a UTC
``timestamp`` and the package ``versions`` that produced it.

The database is in WAL mode and every :meth:`ResultsStore.put` is its own transaction,
so a run killed at any moment leaves every row committed before the kill intact, and a
rerun of the grid computes only the missing cells (:func:`taskrel.experiments.run_grid`
skips keys the store :meth:`~ResultsStore.has`).

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
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from .._internal import versions
from .._internal.serialize import atomic_write_text, csv_text, to_jsonable
from ..exceptions import TaskrelInputError

__all__ = ["Cell", "ResultsStore", "COLUMNS", "package_versions", "export_rows"]

#: The key columns, in order.
KEY_COLUMNS = ("encoder", "reference", "target", "fraction", "seed", "estimator")
#: Every column of a row, as :meth:`ResultsStore.query` returns it.
COLUMNS = KEY_COLUMNS + ("value", "extra", "seconds", "timestamp", "versions")

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
    PRIMARY KEY (encoder, reference, target, fraction, seed, estimator)
)
"""

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


def _as_cell(key: Any) -> Cell:
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
        The database file; created (with its folder) if missing.
    timeout : float
        Seconds to wait for a lock held by another process.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0,
                 readonly: bool = False) -> None:
        p = Path(path)
        if p.exists() and p.is_dir():
            raise TaskrelInputError(f"`path` must be a database file; {str(p)!r} is a folder")
        self.path = str(p)
        self._versions = json.dumps(package_versions(), sort_keys=True)
        if readonly:
            self._con = _connect_readonly(p, timeout)
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.execute(_SCHEMA)
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
        """True when the cell's row exists."""
        c = _as_cell(key)
        row = self._con.execute(
            "SELECT 1 FROM cells WHERE encoder=? AND reference=? AND target=? "
            "AND fraction=? AND seed=? AND estimator=?", astuple(c)
        ).fetchone()
        return row is not None

    def keys(self) -> set[Cell]:
        """The keys of every row."""
        cur = self._con.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM cells")
        return {Cell(*r) for r in cur.fetchall()}

    def put(
        self,
        key: Cell | Mapping[str, Any] | tuple[Any, ...],
        value: float | None,
        *,
        extra: Mapping[str, Any] | None = None,
        seconds: float | None = None,
    ) -> None:
        """Write one cell in its own transaction (replacing an existing row).

        ``value`` NaN/inf and None are stored as NULL; ``extra`` must be JSON-able.
        """
        c = _as_cell(key)
        val = _float_or_none(value, "value")
        sec = _float_or_none(seconds, "seconds")
        if extra is not None and not isinstance(extra, Mapping):
            raise TaskrelInputError(f"`extra` must be a mapping or None; got {type(extra).__name__}")
        try:
            extra_s = json.dumps(dict(extra or {}), sort_keys=True, allow_nan=False,
                                 default=_json_default)
        except (TypeError, ValueError) as exc:
            raise TaskrelInputError(f"`extra` must be JSON-serializable: {exc}") from None
        stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with self._con:  # BEGIN ... COMMIT (ROLLBACK on error)
            self._con.execute("BEGIN IMMEDIATE")
            self._con.execute(
                "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (*astuple(c), val, extra_s, sec, stamp, self._versions),
            )

    def get(self, key: Cell | Mapping[str, Any] | tuple[Any, ...]) -> dict[str, Any] | None:
        """The cell's row as a dict, or None."""
        c = _as_cell(key)
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
        sql = f"SELECT {', '.join(COLUMNS)} FROM cells"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY " + ", ".join(KEY_COLUMNS)
        out = []
        for r in self._con.execute(sql, params).fetchall():
            d = dict(zip(COLUMNS, r))
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


def _connect_readonly(p: Path, timeout: float) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``: the file is never written, its journal
    mode never changed) to a file that must hold our ``cells`` table."""
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
    if cols != COLUMNS:
        con.close()
        got = f"a 'cells' table with columns {list(cols)}" if cols else "no 'cells' table"
        raise TaskrelInputError(
            f"{str(p)!r} is not a taskrel results database: it has {got}")
    return con


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
