"""Score-based transferability estimators behind one registry.

Every estimator is a pure function (numpy in, Python float out; labels re-encoded,
inputs never modified) registered with its direction and inputs:

>>> from taskrel.scores import get_score
>>> get_score("logme").higher_is_better
True
"""

from __future__ import annotations

from ._etran import etran_energy as etran_energy
from ._gbc import gbc as gbc
from ._gbc import gbc_textbook as gbc_textbook
from ._hscore import h_score as h_score
from ._hscore import regularized_h_score as regularized_h_score
from ._knn import knn_accuracy as knn_accuracy
from ._leep import leep as leep
from ._leep import nce as nce
from ._leep import nleep as nleep
from ._logme import logme as logme
from ._otce import ot_nce as ot_nce
from ._otce import otce as otce
from ._pactran import pactran_gaussian as pactran_gaussian
from ._rankme import rankme as rankme
from ._registry import ScoreSpec as ScoreSpec
from ._registry import check_score_inputs as check_score_inputs
from ._registry import compute_score as compute_score
from ._registry import get_score as get_score
from ._registry import list_scores as list_scores
from ._relatedness import task_relatedness_score as task_relatedness_score
from ._sfda import sfda as sfda
from ._transrate import transrate as transrate

__all__ = [
    "ScoreSpec",
    "check_score_inputs",
    "compute_score",
    "etran_energy",
    "gbc",
    "gbc_textbook",
    "get_score",
    "h_score",
    "knn_accuracy",
    "leep",
    "list_scores",
    "logme",
    "nce",
    "nleep",
    "ot_nce",
    "otce",
    "pactran_gaussian",
    "rankme",
    "regularized_h_score",
    "sfda",
    "task_relatedness_score",
    "transrate",
]
