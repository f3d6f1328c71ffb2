"""Cross-entropy on JAX's own sharding: vocabulary-parallel losses for ``shard_map``."""

from xentax.parallel._vocab import vocab_parallel_cross_entropy as vocab_parallel_cross_entropy
from xentax.parallel._vocab import (
  vocab_parallel_fused_linear_cross_entropy as vocab_parallel_fused_linear_cross_entropy,
)

__all__ = ["vocab_parallel_cross_entropy", "vocab_parallel_fused_linear_cross_entropy"]
