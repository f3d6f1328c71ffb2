"""xentax: cross-entropy losses for JAX, exact, NaN-free where the answer is finite, and
gradient-verified.

The losses (each also in :mod:`xentax.losses`; options keyword-only, named as in torch):

* integer labels, from logits or probabilities:
  ``sparse_categorical_cross_entropy_with_logits``, ``sparse_categorical_cross_entropy``,
  ``nll_loss``, ``sparse_categorical_focal_loss_with_logits``,
  ``poly1_cross_entropy_with_logits``, ``causal_lm_cross_entropy_with_logits``;
* one-hot or soft targets: ``categorical_cross_entropy_with_logits``,
  ``categorical_cross_entropy``, ``categorical_focal_loss_with_logits``;
* binary (sigmoid, elementwise): ``binary_cross_entropy_with_logits``, ``binary_cross_entropy``,
  ``binary_focal_loss_with_logits``;
* two distributions: ``kl_divergence_with_logits``, ``jensen_shannon_divergence_with_logits``,
  ``distillation_loss``;
* large vocabularies without the logits: ``fused_linear_cross_entropy``,
  ``fused_linear_distillation`` (and :mod:`xentax.parallel` for a sharded vocabulary);
* many classes at a fraction of the cost: ``sampled_softmax_cross_entropy`` (with the
  samplers of :mod:`xentax.sampling`), ``adaptive_softmax_cross_entropy`` and
  ``adaptive_log_softmax``;
* retrieval and contrastive learning: ``in_batch_softmax_cross_entropy`` (two towers, with
  the popularity correction), ``clip_loss``, ``siglip_loss``;
* helpers: ``checked`` (value errors under ``jit``), ``inverse_frequency_class_weights``,
  ``effective_number_class_weights``.

Also :mod:`xentax.metrics` (accuracy, perplexity, calibration, ranking) and :mod:`xentax.gradcheck`
(closed forms and finite differences). The guides and the API reference are in ``docs/``
(``mkdocs serve``); ``xentax --help`` lists the commands.

Example::

  import jax, jax.numpy as jnp, xentax
  logits, labels = jnp.array([[2.0, 0.5, -1.0]]), jnp.array([0])
  loss, grad = jax.value_and_grad(xentax.sparse_categorical_cross_entropy_with_logits)(
    logits, labels, label_smoothing=0.1
  )
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# The public names resolve on first use (PEP 562 ``__getattr__``): ``import xentax`` reads no
# JAX, so ``xentax --help`` answers at once. A loss added to xentax.losses is exported here by
# adding its name to ``_LOSSES`` (and to the ``TYPE_CHECKING`` block, for type checkers).

__version__ = "0.1.0"

_LOSSES = (
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
)
_SUBMODULES = (
  "bench",
  "cli",
  "data",
  "experiments",
  "gradcheck",
  "losses",
  "metrics",
  "parallel",
  "plots",
  "progress",
  "records",
  "report",
  "sampling",
  "training",
)

if TYPE_CHECKING:
  from xentax import gradcheck as gradcheck
  from xentax import metrics as metrics
  from xentax import parallel as parallel
  from xentax import sampling as sampling
  from xentax.losses import adaptive_log_softmax as adaptive_log_softmax
  from xentax.losses import adaptive_softmax_cross_entropy as adaptive_softmax_cross_entropy
  from xentax.losses import binary_cross_entropy as binary_cross_entropy
  from xentax.losses import binary_cross_entropy_with_logits as binary_cross_entropy_with_logits
  from xentax.losses import binary_focal_loss_with_logits as binary_focal_loss_with_logits
  from xentax.losses import categorical_cross_entropy as categorical_cross_entropy
  from xentax.losses import (
    categorical_cross_entropy_with_logits as categorical_cross_entropy_with_logits,
  )
  from xentax.losses import (
    categorical_focal_loss_with_logits as categorical_focal_loss_with_logits,
  )
  from xentax.losses import (
    causal_lm_cross_entropy_with_logits as causal_lm_cross_entropy_with_logits,
  )
  from xentax.losses import checked as checked
  from xentax.losses import clip_loss as clip_loss
  from xentax.losses import distillation_loss as distillation_loss
  from xentax.losses import effective_number_class_weights as effective_number_class_weights
  from xentax.losses import fused_linear_cross_entropy as fused_linear_cross_entropy
  from xentax.losses import fused_linear_distillation as fused_linear_distillation
  from xentax.losses import in_batch_softmax_cross_entropy as in_batch_softmax_cross_entropy
  from xentax.losses import inverse_frequency_class_weights as inverse_frequency_class_weights
  from xentax.losses import (
    jensen_shannon_divergence_with_logits as jensen_shannon_divergence_with_logits,
  )
  from xentax.losses import kl_divergence_with_logits as kl_divergence_with_logits
  from xentax.losses import nll_loss as nll_loss
  from xentax.losses import poly1_cross_entropy_with_logits as poly1_cross_entropy_with_logits
  from xentax.losses import sampled_softmax_cross_entropy as sampled_softmax_cross_entropy
  from xentax.losses import siglip_loss as siglip_loss
  from xentax.losses import sparse_categorical_cross_entropy as sparse_categorical_cross_entropy
  from xentax.losses import (
    sparse_categorical_cross_entropy_with_logits as sparse_categorical_cross_entropy_with_logits,
  )
  from xentax.losses import (
    sparse_categorical_focal_loss_with_logits as sparse_categorical_focal_loss_with_logits,
  )


__all__ = [*_LOSSES, "gradcheck", "metrics", "parallel"]


def __getattr__(name: str):
  if name in _LOSSES:
    value = getattr(importlib.import_module("xentax.losses"), name)
  elif name in _SUBMODULES:
    value = importlib.import_module(f"xentax.{name}")
  else:
    raise AttributeError(f"module 'xentax' has no attribute {name!r}")
  globals()[name] = value  # resolve once
  return value


def __dir__() -> list[str]:
  return sorted({*globals(), *_LOSSES, *_SUBMODULES})
