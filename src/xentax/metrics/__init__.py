"""Measures of predicted probabilities: accuracy, perplexity, entropy, Brier, calibration.

Pure, jit-able functions of ``(logits, labels)`` with integer labels and the losses'
``axis``, ``where`` and ``ignore_index``; :func:`reliability_diagram` draws a matplotlib
figure and :func:`fit_temperature` fits temperature scaling.

Every metric's ``kind`` says what its first argument holds: ``"logits"`` (the default) or
``"probs"``, class scores along ``axis``; ``"binary_logits"`` or ``"binary_probs"``, one
sigmoid logit or probability of the positive class per entry, with labels 0 or 1 (``axis``
unused). Concrete "logits" whose rows lie in [0, 1] and sum to 1 raise a warning.
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
from xentax.metrics._temperature import fit_temperature as fit_temperature

__all__ = [
  "CalibrationBins",
  "brier_score",
  "calibration_bins",
  "expected_calibration_error",
  "fit_temperature",
  "maximum_calibration_error",
  "perplexity",
  "predictive_entropy",
  "reliability_diagram",
  "top_k_accuracy",
]
