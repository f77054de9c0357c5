"""The stages after the reference head, for one target: labels -> label map B and prior
D -> feature map (A, b) -> held-out terms -> assumption checks -> result."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..heads import Standardizer
from ..result import RelatednessResult
from .assumptions import check_assumptions, check_prior_matching
from .bound import (
    BoundTerms,
    HeldOut,
    bound_terms,
    evaluate_held_out,
    transformed_classifier,
)
from .config import RelatednessConfig
from .fit_paper import PAPER_STEPS
from .labels import TargetLabels, marginal_alignment, target_labels
from .maps import FeatureMap, FitProblem
from .matching import initial_label_map, matched_B
from .reference import ReferenceFit, class_prior
from .solvers import SOLVERS, merge_record, solver_name
from .splits import TargetSplit

__all__ = ["relate_target", "fit_label_map", "base_settings", "assemble_result"]

#: Re-matchings of classes with the transformed classifier (fast recipe, sparse B).
MAX_REMATCHES = 2


def base_settings(cfg: RelatednessConfig, ref: ReferenceFit, tgt: TargetSplit
                  ) -> dict[str, Any]:
    """The settings every result reports before any target stage has run."""
    rec = cfg.record()
    settings: dict[str, Any] = {"recipe": rec.pop("recipe"), "b_mode": rec.pop("b_mode"),
                                "tau": ref.tau, "tau_rule": ref.tau_rule, **rec}
    settings.update(
        n_reference_train=int(ref.split.X.shape[0]),
        n_reference_test=int(ref.split.X_test.shape[0]),
        n_target_train=int(tgt.X.shape[0]), n_target_test=int(tgt.X_test.shape[0]),
        n_features=int(ref.split.X.shape[1]), head=dict(ref.head.info))
    if cfg.recipe == "paper":
        settings["paper_steps"] = cfg.max_iter or PAPER_STEPS
    return settings


def _solve(p: FitProblem, BD: tuple[np.ndarray, np.ndarray], settings: dict[str, Any]
           ) -> FeatureMap:
    solver = solver_name(p.cfg.recipe, p.cfg.torch_device)
    if solver != p.cfg.recipe:
        settings["solver"] = solver
    fmap = SOLVERS[solver](p, *BD)
    merge_record(settings, fmap.record)
    return fmap


def fit_label_map(p: FitProblem, BD0: tuple[np.ndarray, np.ndarray], labelled: bool,
                  settings: dict[str, Any]) -> FeatureMap:
    """Fit the feature map from the label map and prior ``BD0 = (B0, D0)``; for labelled
    sparse fast runs, also search the class matching (after a label-free alignment,
    then by the transformed classifier) and keep the matching whose fit scores better
    on the train splits."""
    B0 = BD0[0]
    sol = _solve(p, BD0, settings)
    rematches = 0
    if labelled and p.cfg.b_mode == "sparse" and p.cfg.recipe in ("fast", "batched"):
        # The head's scores on unaligned target features can mislead the matching
        # (e.g. a rotated copy of the reference): also match after a label-free
        # alignment, and keep the matching whose fit is better on the train splits.
        K_T = B0.shape[0]
        A_inv0, b0 = marginal_alignment(p.Zr, p.yr, p.Zt, p.pi_R, ridge=p.cfg.middle_ridge,
                                        tol=p.cfg.tol, rng=p.rng)
        Ba = matched_B(p.head, p.Zt, p.y_fit, K_T, p.pi_T, A_inv0, b0)
        settings["matching_start"] = "identity"
        if not np.array_equal(Ba[0], B0):
            cand = _solve(p, Ba, settings)
            if cand.score < sol.score:
                sol = cand
                settings["matching_start"] = "label-free alignment"
        # Re-match classes with the transformed classifier; refit while it changes.
        while rematches < MAX_REMATCHES:
            Bn = matched_B(p.head, p.Zt, p.y_fit, K_T, p.pi_T, sol.A_inv, sol.b)
            if np.array_equal(Bn[0], sol.B):
                break
            rematches += 1
            cand = _solve(p, Bn, settings)
            if cand.score < sol.score:
                sol = cand
            else:
                break
    settings["rematches"] = rematches
    return sol


def relate_target(ref: ReferenceFit, tgt: TargetSplit, cfg: RelatednessConfig, *,
                  t_start: float) -> RelatednessResult:
    """Every stage after the reference head, for one validated target."""
    rng = np.random.default_rng(cfg.seed)
    d = tgt.X.shape[1]
    st = Standardizer.fit(tgt.X) if cfg.standardize else Standardizer.identity(d)
    Zt, Zt_te = st.transform(tgt.X), st.transform(tgt.X_test)
    settings = base_settings(cfg, ref, tgt)
    labels = target_labels(ref, Zt, Zt_te, tgt.y, tgt.y_test, tgt.classes,
                           tgt.check_labels_test, cfg, rng)
    if labels.rounds is not None:
        settings["pseudo_label_rounds"] = labels.rounds
    pi_T = class_prior(labels.y_fit, labels.n_classes)
    cw = pi_T.copy() if cfg.class_weights == "prior" else np.full(pi_T.size, 1.0 / pi_T.size)
    problem = FitProblem(ref.head, ref.Z, ref.split.y, Zt, labels.y_fit, ref.prior, pi_T,
                         cw, cfg, rng)
    fmap = fit_label_map(problem, initial_label_map(ref, Zt, labels, pi_T, cfg),
                         tgt.labelled, settings)
    held = evaluate_held_out(ref.head, fmap, ref.Z_test, ref.split.y_test, Zt_te,
                             labels.y_eval, cw, cfg, rng)
    settings["w1"] = held.w1
    transformed = transformed_classifier(ref.head, fmap, Zt_te, labels.y_eval)
    if not tgt.labelled:  # against pseudo-labels: a label-free score, not a target loss
        settings["transformed_loss_pseudo"] = transformed[0]
        transformed = (None, None)
    terms = bound_terms(ref.head, fmap, held, ref.Z_test, Zt_te)
    near_chance, cond = check_assumptions(
        tau=ref.tau, lipschitz_reference_coords=terms.lipschitz_reference_coords,
        reference_loss=held.reference_loss, reference_accuracy=held.reference_accuracy,
        n_reference=ref.n_classes, A=fmap.A)
    settings["reference_near_chance"] = near_chance
    settings["prior_matching"] = check_prior_matching(fmap.B, fmap.D, pi_T, cfg.b_mode)
    return assemble_result(ref, labels, fmap, held, terms, pi_T, cond, transformed,
                           settings, t_start)


def assemble_result(ref: ReferenceFit, labels: TargetLabels, fmap: FeatureMap,
                    held: HeldOut, terms: BoundTerms, pi_T: np.ndarray, cond: float,
                    transformed: tuple[float | None, float | None],
                    settings: dict[str, Any], t_start: float) -> RelatednessResult:
    """The result object from the stages' outputs."""
    with np.errstate(divide="ignore", invalid="ignore"):
        C = np.where(ref.prior > 0, fmap.D / ref.prior, 0.0)
    classes = labels.classes
    if labels.source != "true":  # pseudo-classes are reference classes: report their ids
        classes = ref.split.classes[labels.classes.astype(np.int64)]
    return RelatednessResult(
        bound=terms.bound,
        reweighted_reference_loss=held.reweighted_reference_loss,
        label_mismatch=terms.label_mismatch,
        distribution_mismatch=held.distribution_mismatch,
        lipschitz=terms.lipschitz,
        bound_certified=terms.bound_certified,
        lipschitz_certified=terms.lipschitz_certified,
        lipschitz_reference_coords=terms.lipschitz_reference_coords,
        tau=ref.tau,
        transformed_loss=transformed[0],
        transformed_accuracy=transformed[1],
        reference_accuracy=held.reference_accuracy,
        reference_loss=held.reference_loss,
        trivial_bound=math.log(labels.n_classes),
        B=fmap.B, D=fmap.D, C=C, A=fmap.A, A_inv=fmap.A_inv, b=fmap.b,
        prior_mismatch=float(np.abs(pi_T - fmap.B @ fmap.D).sum()),
        condition_number=cond,
        per_class_distance=held.per_class_distance,
        reference_classes=ref.split.classes,
        target_classes=np.asarray(classes),
        label_source=labels.source,
        pseudo_label_accuracy=labels.pseudo_accuracy,
        settings=settings,
        iterations=int(fmap.iterations),
        converged=bool(fmap.converged),
        seconds=time.perf_counter() - t_start,
        history=[float(h) for h in fmap.history],
        reference_head=ref.head,
    )
