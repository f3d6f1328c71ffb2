"""The cross-entropy loss family."""

from xentax.losses._adaptive import adaptive_log_softmax as adaptive_log_softmax
from xentax.losses._adaptive import (
  adaptive_softmax_cross_entropy as adaptive_softmax_cross_entropy,
)
from xentax.losses._binary import binary_cross_entropy as binary_cross_entropy
from xentax.losses._binary import (
  binary_cross_entropy_with_logits as binary_cross_entropy_with_logits,
)
from xentax.losses._binary import binary_focal_loss_with_logits as binary_focal_loss_with_logits
from xentax.losses._categorical import categorical_cross_entropy as categorical_cross_entropy
from xentax.losses._categorical import (
  categorical_cross_entropy_with_logits as categorical_cross_entropy_with_logits,
)
from xentax.losses._categorical_focal import (
  categorical_focal_loss_with_logits as categorical_focal_loss_with_logits,
)
from xentax.losses._causal_lm import (
  causal_lm_cross_entropy_with_logits as causal_lm_cross_entropy_with_logits,
)
from xentax.losses._checked import checked as checked
from xentax.losses._class_weights import (
  effective_number_class_weights as effective_number_class_weights,
)
from xentax.losses._class_weights import (
  inverse_frequency_class_weights as inverse_frequency_class_weights,
)
from xentax.losses._contrastive import clip_loss as clip_loss
from xentax.losses._contrastive import (
  in_batch_softmax_cross_entropy as in_batch_softmax_cross_entropy,
)
from xentax.losses._contrastive import siglip_loss as siglip_loss
from xentax.losses._divergence import distillation_loss as distillation_loss
from xentax.losses._divergence import (
  jensen_shannon_divergence_with_logits as jensen_shannon_divergence_with_logits,
)
from xentax.losses._divergence import kl_divergence_with_logits as kl_divergence_with_logits
from xentax.losses._fused import fused_linear_cross_entropy as fused_linear_cross_entropy
from xentax.losses._fused_distill import fused_linear_distillation as fused_linear_distillation
from xentax.losses._nll import nll_loss as nll_loss
from xentax.losses._poly import poly1_cross_entropy_with_logits as poly1_cross_entropy_with_logits
from xentax.losses._sampled import sampled_softmax_cross_entropy as sampled_softmax_cross_entropy
from xentax.losses._sparse import (
  sparse_categorical_cross_entropy as sparse_categorical_cross_entropy,
)
from xentax.losses._sparse import (
  sparse_categorical_cross_entropy_with_logits as sparse_categorical_cross_entropy_with_logits,
)
from xentax.losses._sparse_focal import (
  sparse_categorical_focal_loss_with_logits as sparse_categorical_focal_loss_with_logits,
)

__all__ = [
  "adaptive_log_softmax",
  "adaptive_softmax_cross_entropy",
  "binary_cross_entropy",
  "binary_cross_entropy_with_logits",
  "binary_focal_loss_with_logits",
  "categorical_cross_entropy",
  "categorical_cross_entropy_with_logits",
  "categorical_focal_loss_with_logits",
  "causal_lm_cross_entropy_with_logits",
  "checked",
  "clip_loss",
  "distillation_loss",
  "effective_number_class_weights",
  "fused_linear_cross_entropy",
  "fused_linear_distillation",
  "in_batch_softmax_cross_entropy",
  "inverse_frequency_class_weights",
  "jensen_shannon_divergence_with_logits",
  "kl_divergence_with_logits",
  "nll_loss",
  "poly1_cross_entropy_with_logits",
  "sampled_softmax_cross_entropy",
  "siglip_loss",
  "sparse_categorical_cross_entropy",
  "sparse_categorical_cross_entropy_with_logits",
  "sparse_categorical_focal_loss_with_logits",
]
