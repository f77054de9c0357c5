"""Transferability: what the bound bounds, measured with a linear probe on the target."""

from __future__ import annotations

import time
import warnings

import numpy as np
from numpy.typing import ArrayLike

from ._internal.devices import resolve_device
from ._internal.validation import (
    check_choice,
    check_consistent_length,
    check_features,
    check_labels,
    check_positive,
    check_same_dim,
    encode_with_classes,
)
from .exceptions import TaskrelInputError
from .heads import HEAD_RECIPES, Standardizer, train_linear_head
from .result import ProbeResult

__all__ = ["linear_probe", "logistic_probe", "LOGREG_C_GRID"]

#: Inverse L2 strengths tried by :func:`logistic_probe` (Kornblith et al. 2019 tune
#: over a log grid the same way; 10^-4 .. 10^2 covers every optimum seen on our suites).
LOGREG_C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def _probe_data(train_features: ArrayLike, train_labels: ArrayLike,
                test_features: ArrayLike, test_labels: ArrayLike
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A probe's checked inputs: (X, classes, y, X_test, y_test as class indices)."""
    X = check_features(train_features, "train_features")
    classes, y = check_labels(train_labels, "train_labels")
    check_consistent_length(X, "train_features", y, "train_labels")
    Xte = check_features(test_features, "test_features", min_samples=1)
    check_same_dim(X, "train_features", Xte, "test_features")
    yte = encode_with_classes(classes, test_labels, "test_labels")
    check_consistent_length(Xte, "test_features", yte, "test_labels")
    return X, classes, y, Xte, yte


def linear_probe(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    *,
    tau: float,
    recipe: str = "fast",
    standardize: bool = True,
    seed: int = 0,
    device: str = "auto",
) -> ProbeResult:
    r"""Train the gradient-penalized linear head on the target and measure it on test.

    This is the transferability that task-relatedness bounds: the target loss of the
    best head in the same hypothesis class as the transformed reference classifier
    (linear softmax on standardized target features with input-gradient norm at most
    ``tau``). Use the same ``tau`` as the relatedness run (``result.tau``).

    Returns
    -------
    ProbeResult
        ``loss`` (mean test cross-entropy, nats) and ``accuracy`` on the test split.

    Examples
    --------
    >>> import numpy as np, taskrel
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50); X = 3 * y[:, None] + rng.normal(size=(100, 4))
    >>> p = taskrel.linear_probe(X[::2], y[::2], X[1::2], y[1::2], tau=1.0, device="cpu")
    >>> p.accuracy > 0.9
    True
    """
    t0 = time.perf_counter()
    recipe = check_choice(recipe, "recipe", HEAD_RECIPES)
    tau = check_positive(tau, "tau")
    seed = check_positive(seed, "seed", integer=True, allow_zero=True)
    dev = resolve_device(device)
    X, classes, y, Xte, yte = _probe_data(train_features, train_labels, test_features,
                                          test_labels)
    s = Standardizer.fit(X) if standardize else Standardizer.identity(X.shape[1])
    Z, Zte = s.transform(X), s.transform(Xte)
    head = train_linear_head(
        Z, y, classes.size, tau=tau, recipe=recipe, seed=seed, device=dev,
    )
    return ProbeResult(
        loss=float(head.loss(Zte, yte).mean()),
        accuracy=float(np.mean(head.predict_proba(Zte).argmax(1) == yte)),
        train_loss=float(head.loss(Z, y).mean()),
        train_accuracy=float(np.mean(head.predict_proba(Z).argmax(1) == y)),
        tau=tau,
        seconds=time.perf_counter() - t0,
        settings={"recipe": recipe, "standardize": standardize, "seed": seed,
                  "head": head.info},
    )


def logistic_probe(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    *,
    c_grid: tuple[float, ...] = LOGREG_C_GRID,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 2000,
) -> ProbeResult:
    r"""The field's standard linear probe: L2 logistic regression, tuned.

    Features are standardized on the training rows. The inverse regularization
    strength ``C`` is chosen from ``c_grid`` by accuracy on a stratified
    ``val_fraction`` of the training rows (seeded; ties go to the stronger
    regularization), then the probe is refit on all training rows with that ``C``
    and measured once on the test split. Unlike :func:`linear_probe` there is no
    Lipschitz constraint: this is the ground truth that score-based estimators
    (LogME, LEEP, ...) are evaluated against, not the quantity the bound bounds.

    Returns
    -------
    ProbeResult
        ``tau`` is NaN (no constraint); ``settings`` holds ``C``, ``val_accuracy``
        and the validation accuracy of every ``C`` tried.

    Examples
    --------
    >>> import numpy as np, taskrel
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50); X = 3 * y[:, None] + rng.normal(size=(100, 4))
    >>> taskrel.logistic_probe(X[::2], y[::2], X[1::2], y[1::2]).accuracy > 0.9
    True
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    t0 = time.perf_counter()
    seed = check_positive(seed, "seed", integer=True, allow_zero=True)
    if (isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float))
            or not 0 < val_fraction < 1):
        raise TaskrelInputError(
            f"`val_fraction` must be a number in (0, 1); got {val_fraction!r}")
    grid = tuple(check_positive(c, "c_grid") for c in (c_grid or ()))
    if not grid:
        raise TaskrelInputError(f"`c_grid` must hold at least one C > 0; got {c_grid!r}")
    max_iter = check_positive(max_iter, "max_iter", integer=True)
    X, classes, y, Xte, yte = _probe_data(train_features, train_labels, test_features,
                                          test_labels)
    if np.bincount(y).min() < 2:
        raise TaskrelInputError(
            "`train_labels` must hold at least 2 rows of every class (one for the "
            f"validation split); got counts {np.bincount(y).tolist()}")

    def fit(Xa: np.ndarray, ya: np.ndarray, c: float) -> tuple[Standardizer, object]:
        s = Standardizer.fit(Xa)
        m = LogisticRegression(C=c, max_iter=max_iter)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs ConvergenceWarning at tiny C
            m.fit(s.transform(Xa), ya)
        return s, m

    n_val = max(int(round(val_fraction * y.size)), classes.size)
    itr, iva = train_test_split(np.arange(y.size), test_size=n_val, stratify=y,
                                random_state=seed)
    val = {}
    for c in sorted(grid):
        s, m = fit(X[itr], y[itr], c)
        val[c] = float(np.mean(m.predict(s.transform(X[iva])) == y[iva]))
    best = max(sorted(grid), key=lambda c: (val[c], -c))
    s, m = fit(X, y, best)
    Z, Zte = s.transform(X), s.transform(Xte)

    def nll(Za: np.ndarray, ya: np.ndarray) -> tuple[float, float]:
        P = np.zeros((ya.size, classes.size))
        P[:, m.classes_] = m.predict_proba(Za)
        loss = -np.log(np.clip(P[np.arange(ya.size), ya], 1e-300, None)).mean()
        return float(loss), float(np.mean(P.argmax(1) == ya))

    loss, acc = nll(Zte, yte)
    tr_loss, tr_acc = nll(Z, y)
    return ProbeResult(
        loss=loss, accuracy=acc, train_loss=tr_loss, train_accuracy=tr_acc,
        tau=float("nan"), seconds=time.perf_counter() - t0,
        settings={"kind": "logistic_regression", "C": best, "val_accuracy": val[best],
                  "val_accuracies": {str(c): v for c, v in val.items()},
                  "val_fraction": val_fraction, "seed": seed},
    )
