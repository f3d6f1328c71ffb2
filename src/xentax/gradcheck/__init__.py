"""Gradient verification: closed forms, finite differences and reports for every loss.

``jax.grad`` of each xentax loss is checked against a hand-derived closed form (softmax
regression's ``X^T (y_pred - y)`` and its generalisations with weights, smoothing, z-loss
and masks) and against float64 central differences; :class:`GradReport` says by how much
they differ.
"""

from xentax.gradcheck._adaptive_grads import (
  adaptive_softmax_cross_entropy_grad as adaptive_softmax_cross_entropy_grad,
)
from xentax.gradcheck._binary_grads import binary_cross_entropy_grad as binary_cross_entropy_grad
from xentax.gradcheck._binary_grads import (
  binary_cross_entropy_with_logits_grad as binary_cross_entropy_with_logits_grad,
)
from xentax.gradcheck._binary_grads import (
  binary_focal_loss_with_logits_grad as binary_focal_loss_with_logits_grad,
)
from xentax.gradcheck._divergence_grads import distillation_loss_grad as distillation_loss_grad
from xentax.gradcheck._divergence_grads import (
  jensen_shannon_divergence_with_logits_grad as jensen_shannon_divergence_with_logits_grad,
)
from xentax.gradcheck._divergence_grads import (
  kl_divergence_with_logits_grad as kl_divergence_with_logits_grad,
)
from xentax.gradcheck._divergence_grads import (
  kl_divergence_with_logits_teacher_grad as kl_divergence_with_logits_teacher_grad,
)
from xentax.gradcheck._finite_diff import check_finite_differences as check_finite_differences
from xentax.gradcheck._finite_diff import check_grads_report as check_grads_report
from xentax.gradcheck._finite_diff import (
  finite_difference_directional as finite_difference_directional,
)
from xentax.gradcheck._finite_diff import finite_difference_jacobian as finite_difference_jacobian
from xentax.gradcheck._logits_grad import LOSS_GRADS as LOSS_GRADS
from xentax.gradcheck._logits_grad import logits_grad as logits_grad
from xentax.gradcheck._matrix import format_summary as format_summary
from xentax.gradcheck._matrix import format_table as format_table
from xentax.gradcheck._matrix import run_matrix as run_matrix
from xentax.gradcheck._nll_grads import (
  causal_lm_cross_entropy_with_logits_grad as causal_lm_cross_entropy_with_logits_grad,
)
from xentax.gradcheck._nll_grads import nll_loss_grad as nll_loss_grad
from xentax.gradcheck._nll_grads import (
  poly1_cross_entropy_with_logits_grad as poly1_cross_entropy_with_logits_grad,
)
from xentax.gradcheck._records import GradCheckRecord as GradCheckRecord
from xentax.gradcheck._records import check_matrix as check_matrix
from xentax.gradcheck._records import checked_names as checked_names
from xentax.gradcheck._regression import (
  fused_linear_cross_entropy_grad as fused_linear_cross_entropy_grad,
)
from xentax.gradcheck._regression import logistic_regression_grad as logistic_regression_grad
from xentax.gradcheck._regression import (
  softmax_cross_entropy_hessian as softmax_cross_entropy_hessian,
)
from xentax.gradcheck._regression import softmax_regression_grad as softmax_regression_grad
from xentax.gradcheck._regression import (
  softmax_regression_per_example_grad as softmax_regression_per_example_grad,
)
from xentax.gradcheck._report import GradReport as GradReport
from xentax.gradcheck._report import compare as compare
from xentax.gradcheck._retrieval_grads import clip_loss_grad as clip_loss_grad
from xentax.gradcheck._retrieval_grads import (
  in_batch_softmax_cross_entropy_grad as in_batch_softmax_cross_entropy_grad,
)
from xentax.gradcheck._retrieval_grads import siglip_loss_grad as siglip_loss_grad
from xentax.gradcheck._sampled_grads import (
  sampled_softmax_cross_entropy_grad as sampled_softmax_cross_entropy_grad,
)
from xentax.gradcheck._softmax_grads import (
  categorical_cross_entropy_grad as categorical_cross_entropy_grad,
)
from xentax.gradcheck._softmax_grads import (
  categorical_cross_entropy_with_logits_grad as categorical_cross_entropy_with_logits_grad,
)
from xentax.gradcheck._softmax_grads import (
  sparse_categorical_cross_entropy_grad as sparse_categorical_cross_entropy_grad,
)
from xentax.gradcheck._softmax_grads import (
  sparse_categorical_cross_entropy_with_logits_grad as sparse_categorical_cross_entropy_with_logits_grad,  # noqa: E501
)
from xentax.gradcheck._softmax_grads import (
  sparse_categorical_focal_loss_with_logits_grad as sparse_categorical_focal_loss_with_logits_grad,
)
from xentax.gradcheck._tolerances import DTYPES as DTYPES
from xentax.gradcheck._tolerances import FD_STEP as FD_STEP
from xentax.gradcheck._tolerances import TOLERANCES as TOLERANCES
from xentax.gradcheck._tolerances import finite_difference_noise as finite_difference_noise
from xentax.gradcheck._tolerances import tolerance as tolerance

__all__ = [
  "DTYPES",
  "FD_STEP",
  "LOSS_GRADS",
  "TOLERANCES",
  "GradCheckRecord",
  "GradReport",
  "adaptive_softmax_cross_entropy_grad",
  "binary_cross_entropy_grad",
  "binary_cross_entropy_with_logits_grad",
  "binary_focal_loss_with_logits_grad",
  "categorical_cross_entropy_grad",
  "categorical_cross_entropy_with_logits_grad",
  "causal_lm_cross_entropy_with_logits_grad",
  "check_finite_differences",
  "check_grads_report",
  "check_matrix",
  "checked_names",
  "clip_loss_grad",
  "compare",
  "distillation_loss_grad",
  "finite_difference_directional",
  "finite_difference_jacobian",
  "finite_difference_noise",
  "format_summary",
  "format_table",
  "fused_linear_cross_entropy_grad",
  "in_batch_softmax_cross_entropy_grad",
  "jensen_shannon_divergence_with_logits_grad",
  "kl_divergence_with_logits_grad",
  "kl_divergence_with_logits_teacher_grad",
  "logistic_regression_grad",
  "logits_grad",
  "nll_loss_grad",
  "poly1_cross_entropy_with_logits_grad",
  "run_matrix",
  "sampled_softmax_cross_entropy_grad",
  "siglip_loss_grad",
  "softmax_cross_entropy_hessian",
  "softmax_regression_grad",
  "softmax_regression_per_example_grad",
  "sparse_categorical_cross_entropy_grad",
  "sparse_categorical_cross_entropy_with_logits_grad",
  "sparse_categorical_focal_loss_with_logits_grad",
  "tolerance",
]
