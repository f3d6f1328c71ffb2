"""Every size the benchmarks use, and the targets they are judged by: one table.

Design notes:
  ``"quick"`` sizes finish in minutes on a 2-core CPU (``xentax bench --quick`` and
  ``xentax reproduce``); ``"full"`` sizes are for a GPU (up to 8192 x 131072 logits).
  A suite reads its entries by name; a new suite adds its own keys here.
"""

from __future__ import annotations

SIZES: dict[str, dict] = {
  "quick": {
    "reference": (4096, 32768),
    "repeats": 3,
    "losses_grid": [(256, 4096)],
    "losses_dtypes": ("float32",),
    # These losses at these f32 sizes, judged against TARGETS["losses"] (the report's target
    # check). Every loss, and the full sizes add [256, 4096] and [1024, 131072]: `xentax
    # bench --suite losses` without --quick (slow on a 2-core CPU).
    "losses": (
      "sparse_categorical_cross_entropy_with_logits",
      "categorical_cross_entropy_with_logits",
      "binary_cross_entropy_with_logits",
      "kl_divergence_with_logits",
    ),
    "losses_target": [(4096, 32768)],
    # Time the naive rows also where optax is the baseline (where it is not, the naive
    # formula is the baseline and always runs). Quick runs judge xentax against optax only.
    "losses_naive": False,
    "classes": (1024, (1024, 4096, 16384, 32768)),
    "memory": (4096, 32768),
    # (tokens, dim, vocab): the fused loss's defaults against full logits, compiled only.
    "fused_grid": [(n, d, v) for n in (8, 256, 4096) for d in (64, 512) for v in (1000, 32768)],
    # (2048, 512, 32768): the CPU target shape of the fused loss against full logits.
    "fused_time": [(2048, 512, 32768)],
    "fused_blocks": (4096, 16384),
    "fused_memory": (8192, 4096, (32768, 131072, 262144)),
    # (tokens, dim, vocab) and S: sampled and adaptive softmax against the fused full one.
    "many_classes": (256, 512, 131072),
    "many_classes_sampled": (256, 4096),
    # (B, D): contrastive losses over B pairs, chunked against the [B, B] formula.
    "retrieval": (8192, 64),
    "parallel": (512, 8192),
    # (tokens, dim, vocab) per device: the fused loss on 1, 2, 4 and 8 devices, compiled only.
    "parallel_fused": (256, 64, 2048),
    "training_epochs": 1,
    "training_examples": 200,
  },
  "full": {
    "reference": (8192, 131072),
    "repeats": 10,
    "losses_grid": [(4096, 32768), (8192, 131072)],
    "losses_dtypes": ("float32", "bfloat16"),
    "losses": None,  # every loss
    "losses_target": [(256, 4096), (4096, 32768), (1024, 131072)],
    "losses_naive": True,
    "classes": (8192, (4096, 16384, 65536, 131072)),
    "memory": (8192, 131072),
    "fused_grid": [
      (n, d, v) for n in (8, 256, 4096, 8192) for d in (512, 4096) for v in (1000, 32768, 131072)
    ],
    "fused_time": [(8192, 4096, 32768), (8192, 4096, 131072)],
    "fused_blocks": (2048, 8192, 32768),
    "fused_memory": (8192, 4096, (32768, 131072, 262144)),
    "many_classes": (8192, 4096, 131072),
    "many_classes_sampled": (256, 4096),
    "retrieval": (32768, 512),
    "parallel": (8192, 131072),
    "parallel_fused": (2048, 1024, 16384),
    "training_epochs": 2,
    "training_examples": 1000,
  },
}

# The claims the report checks against the measurements.
TARGETS: dict[str, dict] = {
  # CPU, float32 [4096, 32768], measured side by side: xentax no slower than optax, and all
  # options (ignore_index, class weights, smoothing) at most 30% slower than none.
  "losses": {
    "loss": "sparse_categorical_cross_entropy_with_logits",
    "batch": 4096,
    "classes": 32768,
    "xentax_over_optax": 1.0,
    "options_over_plain": 1.3,
    "options_implementation": "xentax (ignore_index, class_weights, smoothing)",
  },
  # Fused value-and-grad temporaries at hidden [8192, 4096], V = 131072.
  "fused_memory": {"vocab_size": 131072, "temp_mb": 512, "implementation": "fused (auto block)"},
}


def sizes(quick: bool) -> dict:
  """The sizes of a ``--quick`` run (True) or a full one (False)."""
  return SIZES["quick" if quick else "full"]
