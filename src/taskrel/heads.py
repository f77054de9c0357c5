r"""Linear softmax heads with a bounded input-gradient norm (the paper's classifiers).

Both the reference classifier :math:`h_R` and the target probe that measures
transferability are linear softmax heads :math:`h(z) = \mathrm{softmax}(Wz + c)` on
standardized features, trained with cross-entropy plus a penalty that keeps the input
gradient of the loss below a target :math:`\tau`:

.. math::

    \nabla_z \ell(h(z), y) = W^\top (p(z) - e_y), \qquad
    \mathrm{GP} = \mathbb{E}_i\, \mathrm{relu}(\lVert W^\top (p_i - e_{y}) \rVert_2 - \tau)^2 .

For a linear head the gradient is available in closed form, so the penalty needs no
double back-propagation: :math:`\lVert W^\top(p - e_y)\rVert^2 = p^\top G p - 2 (Gp)_y +
G_{yy}` with :math:`G = WW^\top`, which costs :math:`O(nK^2)` for *all* labels at once.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ._internal.devices import generator, resolve_device
from ._internal.validation import check_choice, check_positive
from .exceptions import ConvergenceWarning

__all__ = ["Standardizer", "LinearHead", "train_linear_head", "HEAD_RECIPES"]

HEAD_RECIPES = ("fast", "paper")

#: Weight of the gradient penalty; the official large-scale code uses 1e4.
GP_WEIGHT = 1e4

@dataclass(frozen=True)
class Standardizer:
    """Per-feature standardization fitted on a train split.

    Constant features keep scale 1 (they map to 0), as in scikit-learn's scaler.
    """

    mean: NDArray[np.float64]
    scale: NDArray[np.float64]

    @classmethod
    def fit(cls, X: NDArray[np.float64]) -> Standardizer:
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        scale = np.where(std > 1e-12 * max(1.0, float(np.abs(mean).max())), std, 1.0)
        return cls(mean=mean, scale=scale)

    @classmethod
    def identity(cls, d: int) -> Standardizer:
        return cls(mean=np.zeros(d), scale=np.ones(d))

    def transform(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return (X - self.mean) / self.scale

@dataclass(frozen=True)
class LinearHead:
    """A linear softmax head ``softmax(Z @ weight.T + bias)`` on standardized features.

    Attributes
    ----------
    weight : ndarray of shape (n_classes, n_features)
    bias : ndarray of shape (n_classes,)
    tau : float or None
        The gradient-norm target it was trained with (None for a caller's head).
    standardizer : Standardizer or None
        The feature standardization the head expects (applied by ``task_relatedness``
        when the head is passed back in as ``reference_head``); None means the head
        acts on the features as given.
    info : dict
        Training record: steps, final objective, seconds, recipe.
    """

    weight: NDArray[np.float64]
    bias: NDArray[np.float64]
    tau: float | None = None
    standardizer: Standardizer | None = field(default=None, compare=False)
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def n_classes(self) -> int:
        return int(self.weight.shape[0])

    def logits(self, Z: NDArray[np.float64]) -> NDArray[np.float64]:
        return Z @ self.weight.T + self.bias

    def predict_proba(self, Z: NDArray[np.float64]) -> NDArray[np.float64]:
        u = self.logits(Z)
        u -= u.max(axis=1, keepdims=True)
        p = np.exp(u)
        return p / p.sum(axis=1, keepdims=True)

    def log_proba(self, Z: NDArray[np.float64]) -> NDArray[np.float64]:
        u = self.logits(Z)
        m = u.max(axis=1, keepdims=True)
        return u - m - np.log(np.exp(u - m).sum(axis=1, keepdims=True))

    def loss(self, Z: NDArray[np.float64], y: NDArray[np.int64]) -> NDArray[np.float64]:
        """Per-sample cross-entropy."""
        return -self.log_proba(Z)[np.arange(len(y)), y]

def _grad_sq_norms(
    p: torch.Tensor, G: torch.Tensor, y: torch.Tensor | None
) -> torch.Tensor:
    """||W^T (p - e_y)||^2 for the given labels (shape n) or for all labels (n, K)."""
    Gp = p @ G
    pGp = (Gp * p).sum(dim=1, keepdim=True)
    if y is None:
        return (pGp - 2.0 * Gp + torch.diagonal(G)[None, :]).clamp_min(0.0)
    idx = y[:, None]
    return (pGp - 2.0 * Gp.gather(1, idx) + torch.diagonal(G)[y][:, None]).clamp_min(
        0.0
    )[:, 0]

def _penalty(norms: torch.Tensor, tau: float) -> torch.Tensor:
    return torch.relu(norms - tau).pow(2).mean()

def _train_lbfgs(Zt: torch.Tensor, yt: torch.Tensor, n_classes: int, *, tau: float,
                 seed: int, max_iter: int | None, tol: float, gp_weight: float
                 ) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """The fast recipe: full-batch L-BFGS from zero weights (see train_linear_head)."""
    dev = Zt.device
    W = torch.zeros(n_classes, Zt.shape[1], dtype=torch.float64, device=dev,
                    requires_grad=True)
    c = torch.zeros(n_classes, dtype=torch.float64, device=dev, requires_grad=True)
    steps = 500 if max_iter is None else int(max_iter)
    opt = torch.optim.LBFGS(
        [W, c],
        lr=1.0,
        max_iter=steps,
        history_size=20,
        tolerance_grad=1e-10,
        tolerance_change=tol,
        line_search_fn="strong_wolfe",
    )
    last: list[float] = []

    def closure() -> torch.Tensor:
        opt.zero_grad()
        u = Zt @ W.T + c
        ce = torch.nn.functional.cross_entropy(u, yt)
        p = torch.softmax(u, dim=1)
        G = W @ W.T
        gp_true = _penalty(_grad_sq_norms(p, G, yt).add(1e-30).sqrt(), tau)
        gp_all = _penalty(_grad_sq_norms(p, G, None).add(1e-30).sqrt(), tau)
        obj = ce + gp_weight * (gp_true + gp_all)
        obj.backward()
        last.append(float(obj.detach()))
        return obj

    opt.step(closure)
    state = opt.state[opt._params[0]]
    used = int(state.get("n_iter", steps))
    if used >= steps:
        warnings.warn(
            f"head training hit max_iter={steps} before the objective settled "
            f"(tol={tol}); raise `max_iter` for a tighter head",
            ConvergenceWarning,
            stacklevel=3,
        )
    return W, c, used, last[-1]


def _train_sgd(Zt: torch.Tensor, yt: torch.Tensor, n_classes: int, *, tau: float,
               seed: int, max_iter: int | None, tol: float, gp_weight: float
               ) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """The paper recipe: the official SGD loop with random-label penalties."""
    dev = Zt.device
    gen = generator(seed)
    n, d = Zt.shape
    # The official code seeds torch's global RNG before building the layer; a forked
    # CPU RNG gives the same initial weights and leaves the caller's RNG as it was.
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        lin = torch.nn.Linear(d, n_classes)
    lin = lin.to(device=dev, dtype=torch.float64)
    steps = 2001 if max_iter is None else int(max_iter)
    opt = torch.optim.SGD(lin.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    batch = min(1000, n)
    final = float("nan")
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), generator=gen).to(dev)
        zb, yb = Zt[idx], yt[idx]
        yr = torch.randint(0, n_classes, (batch,), generator=gen).to(dev)
        u = lin(zb)
        p = torch.softmax(u, dim=1)
        G = lin.weight @ lin.weight.T
        ce = torch.nn.functional.cross_entropy(u, yb)
        gp = _penalty(_grad_sq_norms(p, G, yb).add(1e-30).sqrt(), tau) + _penalty(
            _grad_sq_norms(p, G, yr).add(1e-30).sqrt(), tau
        )
        obj = ce + gp_weight * gp
        opt.zero_grad()
        obj.backward()
        opt.step()
        final = float(obj.detach())
    return lin.weight, lin.bias, steps, final


def train_linear_head(
    Z: NDArray[np.float64],
    y: NDArray[np.int64],
    n_classes: int,
    *,
    tau: float,
    recipe: str = "fast",
    seed: int = 0,
    device: str | torch.device = "cpu",
    max_iter: int | None = None,
    tol: float = 1e-7,
    gp_weight: float = GP_WEIGHT,
) -> LinearHead:
    r"""Train a gradient-penalized linear softmax head.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Standardized features (validated by the caller).
    y : ndarray of shape (n_samples,)
        Encoded labels in ``0..n_classes-1``.
    n_classes : int
    tau : float
        Target bound on the input-gradient norm of the loss.
    recipe : {"fast", "paper"}
        ``"fast"``: full-batch L-BFGS (strong Wolfe) from zero weights on
        CE + ``gp_weight`` x (GP(true labels) + mean over *all* labels of GP), stopped
        when the objective changes by less than ``tol`` (relative). The mean over all
        labels is the expectation of the official code's random-label penalty, taken
        exactly. ``"paper"``: the official code's loop — SGD (lr 1e-4, momentum 0.9,
        weight decay 5e-4), minibatches of 1000, fresh uniform random labels each step,
        2001 steps from PyTorch's default initialisation.
    seed : int
        Seeds the paper recipe's initial weights and minibatches, on generators of its
        own: torch's global RNG is left as it was.
    max_iter : int, optional
        L-BFGS iterations (default 500) or SGD steps (default 2001).

    Returns
    -------
    LinearHead
    """
    recipe = check_choice(recipe, "recipe", HEAD_RECIPES)
    tau = check_positive(tau, "tau")
    dev = resolve_device(device)
    Zt = torch.as_tensor(Z, dtype=torch.float64, device=dev)
    yt = torch.as_tensor(y, dtype=torch.int64, device=dev)
    t0 = time.perf_counter()
    train = _train_lbfgs if recipe == "fast" else _train_sgd
    W, c, used, final = train(Zt, yt, n_classes, tau=tau, seed=seed, max_iter=max_iter,
                              tol=tol, gp_weight=gp_weight)
    weight = W.detach().cpu().numpy().astype(np.float64)
    bias = c.detach().cpu().numpy().astype(np.float64)
    if not (np.all(np.isfinite(weight)) and np.all(np.isfinite(bias))):
        raise FloatingPointError(
            "head training diverged (non-finite weights); try a smaller `tau` or the "
            "'fast' recipe"
        )
    info = {
        "recipe": recipe,
        "steps": used,
        "objective": final,
        "seconds": time.perf_counter() - t0,
        "gp_weight": gp_weight,
        "log_n_classes": math.log(n_classes),
    }
    return LinearHead(weight=weight, bias=bias, tau=tau, info=info)
