"""Tiny benchmark sizes (every key of ``xentax.bench.SIZES``) so suites run in seconds."""

TINY = {
  "reference": (8, 64),
  "repeats": 1,
  "losses_grid": [(8, 16)],
  "losses_dtypes": ("float32",),
  "losses": None,
  "losses_target": [(8, 32)],
  "losses_naive": True,
  "classes": (8, (16, 32)),
  "memory": (8, 16),
  "fused_grid": [(8, 4, 16)],
  "fused_time": [(16, 8, 64)],
  "fused_blocks": (32,),
  "fused_memory": (16, 8, (64, 128)),
  "many_classes": (16, 8, 256),
  "many_classes_sampled": (4,),
  "retrieval": (16, 4),
  "parallel": (8, 64),
  "parallel_fused": (8, 4, 16),
  "training_epochs": 1,
  "training_examples": 20,
}
