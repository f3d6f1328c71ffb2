"""xentax: a JAX toolkit for cross-entropy losses."""

from xentax import gradcheck as gradcheck
from xentax import metrics as metrics
from xentax import parallel as parallel
from xentax.losses import binary_cross_entropy as binary_cross_entropy
from xentax.losses import binary_cross_entropy_with_logits as binary_cross_entropy_with_logits
from xentax.losses import binary_focal_loss_with_logits as binary_focal_loss_with_logits
from xentax.losses import categorical_cross_entropy as categorical_cross_entropy
from xentax.losses import (
  categorical_cross_entropy_with_logits as categorical_cross_entropy_with_logits,
)
from xentax.losses import causal_lm_cross_entropy_with_logits as causal_lm_cross_entropy_with_logits
from xentax.losses import checked as checked
from xentax.losses import distillation_loss as distillation_loss
from xentax.losses import effective_number_class_weights as effective_number_class_weights
from xentax.losses import fused_linear_cross_entropy as fused_linear_cross_entropy
from xentax.losses import fused_linear_distillation as fused_linear_distillation
from xentax.losses import inverse_frequency_class_weights as inverse_frequency_class_weights
from xentax.losses import (
  jensen_shannon_divergence_with_logits as jensen_shannon_divergence_with_logits,
)
from xentax.losses import kl_divergence_with_logits as kl_divergence_with_logits
from xentax.losses import nll_loss as nll_loss
from xentax.losses import poly1_cross_entropy_with_logits as poly1_cross_entropy_with_logits
from xentax.losses import sparse_categorical_cross_entropy as sparse_categorical_cross_entropy
from xentax.losses import (
  sparse_categorical_cross_entropy_with_logits as sparse_categorical_cross_entropy_with_logits,
)
from xentax.losses import (
  sparse_categorical_focal_loss_with_logits as sparse_categorical_focal_loss_with_logits,
)

__version__ = "0.1.0"

__all__ = [
  "binary_cross_entropy",
  "binary_cross_entropy_with_logits",
  "binary_focal_loss_with_logits",
  "categorical_cross_entropy",
  "categorical_cross_entropy_with_logits",
  "causal_lm_cross_entropy_with_logits",
  "checked",
  "distillation_loss",
  "effective_number_class_weights",
  "fused_linear_cross_entropy",
  "fused_linear_distillation",
  "gradcheck",
  "inverse_frequency_class_weights",
  "jensen_shannon_divergence_with_logits",
  "kl_divergence_with_logits",
  "metrics",
  "nll_loss",
  "parallel",
  "poly1_cross_entropy_with_logits",
  "sparse_categorical_cross_entropy",
  "sparse_categorical_cross_entropy_with_logits",
  "sparse_categorical_focal_loss_with_logits",
]
