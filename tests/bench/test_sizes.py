"""The one table of benchmark sizes and targets (``xentax.bench._sizes``)."""

from tests.bench._tiny import TINY
from xentax import bench
from xentax.bench import _losses, _sizes


def test_the_size_table_has_every_key_at_both_scales():
  for scale in ("quick", "full"):
    assert set(bench.SIZES[scale]) == set(TINY), scale
  target = bench.TARGETS["losses"]
  assert (target["batch"], target["classes"]) in bench.SIZES["quick"]["losses_target"]
  quick_losses = bench.SIZES["quick"]["losses"]
  assert target["loss"] in quick_losses and set(quick_losses) <= set(_losses.LOSSES)
  assert bench.SIZES["full"]["losses"] is None  # every loss
  tokens, dim, vocabs = bench.SIZES["quick"]["fused_memory"]
  assert bench.TARGETS["fused_memory"]["vocab_size"] in vocabs


def test_sizes_picks_the_scale():
  assert _sizes.sizes(True) is bench.SIZES["quick"]
  assert _sizes.sizes(False) is bench.SIZES["full"]


def test_quick_sizes_are_no_larger_than_full_ones():
  quick, full = bench.SIZES["quick"], bench.SIZES["full"]
  assert quick["repeats"] <= full["repeats"]
  assert quick["training_examples"] <= full["training_examples"]
  (qb, qc), (fb, fc) = quick["reference"], full["reference"]
  assert qb * qc <= fb * fc
