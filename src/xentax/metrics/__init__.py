"""Measures of predictions: accuracy, perplexity, entropy, Brier, calibration and ranking.

Pure, jit-able functions of ``(logits, labels)`` with integer labels and the losses'
``axis``, ``where`` and ``ignore_index``; :func:`reliability_diagram` draws a matplotlib
figure and :func:`fit_temperature` fits temperature scaling. The ranking metrics of
retrieval and recommenders (:func:`recall_at_k`, :func:`ndcg_at_k`, :func:`hit_rate_at_k`,
:func:`mean_reciprocal_rank`) take ``[N, V]`` item scores with integer labels or a relevance
matrix; :func:`retrieval_metrics` and :func:`label_ranks` compute them from query and item
embeddings a chunk of items at a time, never holding the ``[N, V]`` scores.

Every classification and calibration metric's ``kind`` says what its first argument holds:
``"logits"`` (the default) or ``"probs"``, class scores along ``axis``; ``"binary_logits"``
or ``"binary_probs"``, one sigmoid logit or probability of the positive class per entry,
with labels 0 or 1 (``axis`` unused). Concrete "logits" whose rows lie in [0, 1] and sum to 1
raise a warning.
"""

from xentax.metrics._calibration import CalibrationBins as CalibrationBins
from xentax.metrics._calibration import calibration_bins as calibration_bins
from xentax.metrics._calibration import expected_calibration_error as expected_calibration_error
from xentax.metrics._calibration import maximum_calibration_error as maximum_calibration_error
from xentax.metrics._classification import brier_score as brier_score
from xentax.metrics._classification import perplexity as perplexity
from xentax.metrics._classification import predictive_entropy as predictive_entropy
from xentax.metrics._classification import top_k_accuracy as top_k_accuracy
from xentax.metrics._plot import reliability_diagram as reliability_diagram
from xentax.metrics._ranking import hit_rate_at_k as hit_rate_at_k
from xentax.metrics._ranking import label_ranks as label_ranks
from xentax.metrics._ranking import mean_reciprocal_rank as mean_reciprocal_rank
from xentax.metrics._ranking import ndcg_at_k as ndcg_at_k
from xentax.metrics._ranking import recall_at_k as recall_at_k
from xentax.metrics._ranking import retrieval_metrics as retrieval_metrics
from xentax.metrics._temperature import fit_temperature as fit_temperature

__all__ = [
  "CalibrationBins",
  "brier_score",
  "calibration_bins",
  "expected_calibration_error",
  "fit_temperature",
  "hit_rate_at_k",
  "label_ranks",
  "maximum_calibration_error",
  "mean_reciprocal_rank",
  "ndcg_at_k",
  "perplexity",
  "predictive_entropy",
  "recall_at_k",
  "reliability_diagram",
  "retrieval_metrics",
  "top_k_accuracy",
]
