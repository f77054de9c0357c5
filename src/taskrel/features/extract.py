r"""Feature extraction into task files, with a checksummed, resumable feature cache.

``extract_task(encoder, dataset)`` encodes the train and/or test split (batched,
no-grad, with a progress bar) and returns a :class:`taskrel.io.Task`; with ``out=`` it
also writes the task file the engine reads (``features``, ``labels``, ``test_features``,
``test_labels``, ``class_names``, ``source_probs``/``test_source_probs`` when the
encoder has its own classifier, and a JSON ``meta`` string).

Cache layout (``cache_dir``, default ``$TASKREL_CACHE_DIR`` or ``~/.cache/taskrel``)::

    features/<key>/key.json             what the key hashes (for humans)
    features/<key>/chunk_00000.npz      rows 0..chunk_rows-1 (features, probs)
    features/<key>/chunk_00000.sha256   SHA-256 of the .npz bytes, written after it

``<key>`` is the SHA-256 of everything that determines the features: the encoder's
``cache_key()`` (name, weights file digest and version, input size, normalisation,
options), the dataset fingerprint (a hash of its inputs, labels and class names), the
split, the selected rows, whether probabilities are stored and the taskrel version (a
new release re-extracts rather than trust features an older one cached). Every file is
written to a temporary name and renamed (atomic); a chunk counts only when its checksum
file exists and matches, so a killed run leaves at worst a chunk that is recomputed, and
a rerun resumes from the chunks already done. A corrupted chunk is detected, removed,
recomputed and reported with a ``UserWarning``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._internal.denormals import flush_denormals
from .._internal.oom import with_oom_fallback
from .._internal.sampling import LIMIT_RULES, describe_limit_rule, limited_rows
from .._internal.versions import package_version, package_versions
from ..exceptions import TaskrelInputError
from ..io import Task, atomic_write_json, atomic_write_text, save_task
from .datasets import Dataset, dataset_fingerprint, load_dataset
from .encoders import Encoder, load_encoder

__all__ = ["extract_task", "selected_rows", "default_cache_dir", "CHUNK_ROWS"]

#: Rows per cache chunk (a killed run loses at most one chunk of work).
CHUNK_ROWS = 1024
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$TASKREL_CACHE_DIR`` if set, else ``~/.cache/taskrel``."""
    env = os.environ.get("TASKREL_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "taskrel"


def _take(x: Any, idx: NDArray[np.intp]) -> Any:
    return x[idx] if isinstance(x, np.ndarray) else [x[i] for i in idx]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove_stale_tmp(folder: Path | None) -> int:
    """Remove ``.chunk_*.<pid>.tmp`` files left by writers that are no longer running."""
    if folder is None or not folder.is_dir():
        return 0
    n = 0
    for f in folder.glob(".chunk_*.tmp"):
        pid = f.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _pid_alive(int(pid)):
            f.unlink(missing_ok=True)
            n += 1
    return n


class _ChunkCache:
    """One cache entry: chunks of rows, each an .npz with a .sha256 beside it."""

    def __init__(self, root: Path | None, key: dict[str, Any]):
        blob = json.dumps(key, sort_keys=True, default=str)
        self.digest = hashlib.sha256(blob.encode()).hexdigest()[:32]
        self.dir = None if root is None else root / "features" / self.digest
        self.key = key
        self.recomputed = 0
        self.stale_removed = _remove_stale_tmp(self.dir)

    def _paths(self, i: int) -> tuple[Path, Path]:
        assert self.dir is not None
        return self.dir / f"chunk_{i:05d}.npz", self.dir / f"chunk_{i:05d}.sha256"

    def load(self, i: int, rows: int, with_probs: bool) -> dict[str, NDArray[Any]] | None:
        if self.dir is None:
            return None
        npz, sha = self._paths(i)
        if not npz.is_file() or not sha.is_file():
            return None
        raw = npz.read_bytes()
        try:
            ok = hashlib.sha256(raw).hexdigest() == sha.read_text().strip()
            if ok:
                with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                    out = {k: z[k] for k in z.files}
                ok = out["features"].shape[0] == rows and (
                    not with_probs or out.get("probs", np.zeros(0)).shape[:1] == (rows,))
                ok = ok and all(bool(np.all(np.isfinite(v))) for v in out.values())
        except Exception:  # noqa: BLE001 - any unreadable chunk is recomputed
            ok = False
        if not ok:
            warnings.warn(f"feature cache chunk {npz} is corrupted (checksum or content "
                          "mismatch); recomputing it", UserWarning, stacklevel=4)
            npz.unlink(missing_ok=True)
            sha.unlink(missing_ok=True)
            self.recomputed += 1
            return None
        return out

    def store(self, i: int, arrays: dict[str, NDArray[Any]]) -> None:
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        kj = self.dir / "key.json"
        if not kj.is_file():
            atomic_write_json(kj, self.key)
        npz, sha = self._paths(i)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        raw = buf.getvalue()
        tmp = npz.with_name(f".{npz.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, npz)
        atomic_write_text(sha, hashlib.sha256(raw).hexdigest() + "\n")


def _encode_chunk(enc: Encoder, xb: Any, batch: int, with_probs: bool) -> dict[str, Any]:
    """Encode one chunk; on out-of-memory (GPU or host) the chunk is encoded again from
    scratch with half the batch (:func:`taskrel._internal.oom.with_oom_fallback`, which warns),
    so a stored chunk is always the output of one complete call. ``"batch"`` in the
    result is the batch that fitted, reused for the next chunks. Denormal floats are
    flushed to zero meanwhile (:func:`taskrel._internal.denormals.flush_denormals`:
    values below 1.2e-38 become 0), then the previous setting is restored."""
    used = [batch]

    def run(b: int) -> dict[str, Any]:
        used[0] = b
        if with_probs:
            f, p = enc.encode_with_probs(xb, batch_size=b)
            return {"features": f, "probs": p if p is not None else np.zeros(0)}
        return {"features": enc.encode(xb, batch_size=b)}

    first = max(1, min(batch, len(xb)))
    with flush_denormals():  # every encoder; the previous setting comes back after
        got = with_oom_fallback(run, first)
    got["batch"] = batch if used[0] == first else used[0]
    return got


def _check_finite_output(enc: Encoder, ds: Dataset, split: str, chunk: int,
                         got: dict[str, Any]) -> None:
    """Encoder output must be finite; a NaN/inf feature is never cached or used."""
    for k, v in got.items():
        bad = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
        if bad:
            raise TaskrelInputError(
                f"encoder {enc.name!r} gave {bad} NaN/inf value(s) in its {k} on "
                f"{ds.name} {split} (chunk {chunk}); check its weights and input size")


def _extract_split(enc: Encoder, ds: Dataset, split: str, idx: NDArray[np.intp],
                   cache_root: Path | None, with_probs: bool, progress: bool,
                   batch_size: int | None, chunk_rows: int,
                   limit_rule: str = "permutation", fingerprint: str | None = None
                   ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None,
                              dict[str, Any]]:
    from tqdm.auto import tqdm

    x = ds.x_train if split == "train" else ds.x_test
    key = {"format": CACHE_FORMAT, "taskrel": package_version("taskrel"),
           "encoder": enc.cache_key(), "dataset": ds.name,
           "fingerprint": fingerprint or dataset_fingerprint(ds), "split": split,
           "rows": hashlib.sha256(np.asarray(idx, np.int64).tobytes()).hexdigest()[:16],
           "n_rows": int(len(idx)), "chunk_rows": chunk_rows, "with_probs": with_probs}
    if limit_rule != "permutation":  # the legacy rule's key stays as it was
        key["limit_rule"] = limit_rule
    cache = _ChunkCache(cache_root, key)
    feats, probs = [], []
    hits = 0
    batch = int(batch_size or enc.batch_size)
    n_chunks = (len(idx) + chunk_rows - 1) // chunk_rows
    with tqdm(total=len(idx), desc=f"{enc.name} {ds.name} {split}", unit=enc.modality,
              disable=not progress) as bar:
        for c in range(n_chunks):
            sel = idx[c * chunk_rows:(c + 1) * chunk_rows]
            got = cache.load(c, len(sel), with_probs)
            if got is None:
                got = _encode_chunk(enc, _take(x, sel), batch, with_probs)
                batch = got.pop("batch")
                _check_finite_output(enc, ds, split, c, got)
                cache.store(c, got)
            else:
                hits += 1
            feats.append(got["features"].astype(np.float32, copy=False))
            if with_probs:
                probs.append(got["probs"].astype(np.float32, copy=False))
            bar.update(len(sel))
    F = np.concatenate(feats) if feats else np.zeros((0, enc.dim), np.float32)
    P = np.concatenate(probs) if with_probs and probs else None
    info = {"cache_key": cache.digest, "chunks": n_chunks, "chunks_from_cache": hits,
            "chunks_recomputed_after_corruption": cache.recomputed,
            "cache_dir": None if cache.dir is None else str(cache.dir)}
    return F, P, info


def extract_task(encoder: Encoder | str, dataset: Dataset | str, *, split: str = "both",
                 limit: int | None = None, out: str | os.PathLike[str] | None = None,
                 cache_dir: str | os.PathLike[str] | None | bool = None,
                 device: str = "auto", progress: bool = True,
                 with_source_probs: bool = True, batch_size: int | None = None,
                 chunk_rows: int = CHUNK_ROWS, limit_rule: str = "stratified",
                 fit: bool = True) -> Task:
    """Encode a dataset's split(s) into a task (features, labels, source probabilities).

    Parameters
    ----------
    encoder : Encoder or str
        An encoder, or a name for :func:`taskrel.encoders.load_encoder`.
    dataset : Dataset or str
        A dataset, or a name for :func:`taskrel.data.load_dataset`.
    split : {'both', 'train', 'test'}
        With ``'test'`` the test split goes into ``features`` / ``labels``.
    limit : int, optional
        Encode at most ``limit`` rows per split, picked by ``limit_rule`` and kept in
        the dataset's order.
    out : path, optional
        Write the task file (atomically).
    cache_dir : path, None or False
        Feature cache root; None uses :func:`default_cache_dir`; False disables caching.
    device : str
        Used when ``encoder`` is a name.
    progress : bool
        Show a tqdm bar per split.
    with_source_probs : bool
        Also store the encoder's own classifier probabilities when it has a head.
    batch_size : int, optional
        Encoder batch size (its default otherwise).
    chunk_rows : int
        Rows per cache chunk.
    limit_rule : {'stratified', 'permutation'}
        How ``limit`` rows are picked (:mod:`taskrel._internal.sampling`):
        ``'stratified'`` keeps every class's share of the split and at least
        ``min(2, class size)`` rows per class; ``'permutation'`` (the legacy rule, which
        the committed benchmark stores were computed on) the first ``limit`` rows of a
        permutation with a fixed seed. Recorded in ``meta["limit_rule"]``.
    fit : bool
        Fit an encoder that has a ``fit`` method (``tfidf_svd``) on the train split's
        selected rows first. False uses it as it is (it must be fitted already, e.g.
        on another task's rows so that both tasks share its vocabulary and basis).

    Returns
    -------
    taskrel.io.Task
        ``meta`` holds the encoder, dataset, preprocessing, versions and cache info.

    Notes
    -----
    An encoder with a ``fit`` method (``tfidf_svd``) is fitted on the train split's
    selected rows (unless ``fit=False``) and applied unchanged to the test split.

    Examples
    --------
    >>> from taskrel.data import subsample
    >>> ds = subsample(load_dataset("digits"), per_class=2)
    >>> t = extract_task("effnet_lite0_random", ds, cache_dir=False, progress=False,
    ...                  device="cpu")
    >>> t.features.shape, t.test_features.shape, t.features.dtype
    ((20, 1280), (20, 1280), dtype('float32'))
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)) or batch_size < 1):
        raise TaskrelInputError(f"`batch_size` must be an int >= 1 or None; got {batch_size!r}")
    _check_limit_rule(limit_rule)
    ds, enc = _check_extract_args(encoder, dataset, split, limit, chunk_rows, device)
    root = None if cache_dir is False else (
        default_cache_dir() if cache_dir in (None, True) else Path(cache_dir))  # type: ignore[arg-type]
    want_probs = bool(with_source_probs and enc.has_source_head)
    t0 = time.perf_counter()
    splits = ["train", "test"] if split == "both" else [split]
    idx = {s: selected_rows(ds, s, limit, limit_rule) for s in ("train", "test")}
    fit_fn = getattr(enc, "fit", None)
    if fit and callable(fit_fn):
        fit_fn(_take(ds.x_train, idx["train"]))
    elif callable(fit_fn) and getattr(enc, "fitted_on", "") is None:
        raise TaskrelInputError(f"encoder {enc.name!r} is not fitted; call its fit() "
                                "first or pass fit=True")
    res: dict[str, Any] = {}
    cache_info: dict[str, Any] = {}
    fingerprint = dataset_fingerprint(ds)  # hashes every input: once per call
    for s in splits:
        F, P, info = _extract_split(enc, ds, s, idx[s], root, want_probs, progress,
                                    batch_size, chunk_rows, limit_rule, fingerprint)
        y = (ds.y_train if s == "train" else ds.y_test)[idx[s]].astype(np.int64)
        res[s] = (F, y, P)
        cache_info[s] = info
    meta = _task_meta(enc, ds, split, limit, cache_info, t0, limit_rule, fingerprint)
    first = res[splits[0]]
    test = res.get("test") if split == "both" else None
    task = Task(
        features=first[0], labels=first[1],
        test_features=None if test is None else test[0],
        test_labels=None if test is None else test[1],
        class_names=list(ds.class_names),
        path=None if out is None else str(out),
        meta=meta,
        source_probs=first[2],
        test_source_probs=None if test is None else test[2],
    )
    if out is not None:
        _save(out, task, meta)
    return task


def _check_extract_args(encoder: Encoder | str, dataset: Dataset | str, split: str,
                        limit: int | None, chunk_rows: int, device: str
                        ) -> tuple[Dataset, Encoder]:
    """Validate :func:`extract_task`'s arguments; the dataset and encoder they name."""
    if split not in ("both", "train", "test"):
        raise TaskrelInputError(
            f"`split` must be one of ['both', 'train', 'test']; got {split!r}")
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise TaskrelInputError(f"`limit` must be an int >= 1 or None; got {limit!r}")
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise TaskrelInputError(f"`chunk_rows` must be an int >= 1; got {chunk_rows!r}")
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    if not isinstance(ds, Dataset):
        raise TaskrelInputError(
            f"`dataset` must be a Dataset or a dataset name; got {type(dataset).__name__}")
    enc = load_encoder(encoder, device=device) if isinstance(encoder, str) else encoder
    if not isinstance(enc, Encoder):
        raise TaskrelInputError(
            f"`encoder` must be an Encoder or an encoder name; got {type(encoder).__name__}")
    if enc.modality != ds.modality:
        raise TaskrelInputError(
            f"encoder {enc.name!r} takes {enc.modality} inputs but dataset {ds.name!r} "
            f"holds {ds.modality} inputs")
    return ds, enc


def selected_rows(ds: Dataset, split: str, limit: int | None,
                  limit_rule: str = "stratified") -> NDArray[np.intp]:
    """The rows of ``ds``'s ``split`` (``'train'`` or ``'test'``) that
    :func:`extract_task` encodes with ``limit`` and ``limit_rule``, increasing."""
    _check_limit_rule(limit_rule)
    y = np.asarray(ds.y_train if split == "train" else ds.y_test)
    return limited_rows(len(y), limit, y if limit_rule == "stratified" else None)


def _check_limit_rule(limit_rule: str) -> None:
    if limit_rule not in LIMIT_RULES:
        raise TaskrelInputError(
            f"`limit_rule` must be one of {list(LIMIT_RULES)}; got {limit_rule!r}")


def _task_meta(enc: Encoder, ds: Dataset, split: str, limit: int | None,
               cache_info: dict[str, Any], t0: float,
               limit_rule: str = "permutation", fingerprint: str | None = None
               ) -> dict[str, Any]:
    """The ``meta`` of an extracted task (encoder, dataset, versions, cache, timing)."""
    return {
        "encoder": enc.describe(),
        "dataset": {"name": ds.name, "modality": ds.modality,
                    "fingerprint": fingerprint or dataset_fingerprint(ds),
                    "source": ds.meta},
        "split": split,
        "limit": None if limit is None else int(limit),
        "limit_rule": describe_limit_rule(limit_rule),
        "preprocessing": enc.cache_key(),
        "versions": package_versions(("taskrel", "numpy", "torch", "scikit-learn")),
        "cache": cache_info,
        "seconds": round(time.perf_counter() - t0, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _save(out: str | os.PathLike[str], task: Task, meta: dict[str, Any]) -> None:
    """Write ``task`` as the task file the engine reads (meta as one JSON string)."""
    save_task(out, features=task.features, labels=task.labels,
              test_features=task.test_features, test_labels=task.test_labels,
              class_names=np.asarray(task.class_names, dtype=str),
              source_probs=task.source_probs,
              test_source_probs=task.test_source_probs,
              meta=np.asarray([json.dumps(meta, default=str)]))
