"""Transferability: what the bound bounds, measured with a linear probe on the target."""

from __future__ import annotations

import time

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
from .heads import HEAD_RECIPES, Standardizer, train_linear_head
from .result import ProbeResult

__all__ = ["linear_probe"]


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
    X = check_features(train_features, "train_features")
    classes, y = check_labels(train_labels, "train_labels")
    check_consistent_length(X, "train_features", y, "train_labels")
    Xte = check_features(test_features, "test_features", min_samples=1)
    check_same_dim(X, "train_features", Xte, "test_features")
    yte = encode_with_classes(classes, test_labels, "test_labels")
    check_consistent_length(Xte, "test_features", yte, "test_labels")
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
