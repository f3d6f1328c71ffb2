"""xentax: a JAX toolkit for cross-entropy losses."""

from xentax import gradcheck as gradcheck
from xentax import parallel as parallel
from xentax.losses import binary_cross_entropy as binary_cross_entropy
from xentax.losses import binary_cross_entropy_with_logits as binary_cross_entropy_with_logits
from xentax.losses import binary_focal_loss_with_logits as binary_focal_loss_with_logits
from xentax.losses import categorical_cross_entropy as categorical_cross_entropy
from xentax.losses import (
  categorical_cross_entropy_with_logits as categorical_cross_entropy_with_logits,
)
from xentax.losses import checked as checked
from xentax.losses import fused_linear_cross_entropy as fused_linear_cross_entropy
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
  "checked",
  "fused_linear_cross_entropy",
  "parallel",
  "gradcheck",
  "sparse_categorical_cross_entropy",
  "sparse_categorical_cross_entropy_with_logits",
  "sparse_categorical_focal_loss_with_logits",
]
