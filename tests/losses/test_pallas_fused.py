"""The Pallas fused linear cross-entropy kernels (``implementation="pallas"``), run by Pallas's
interpreter on the CPU, against the XLA path: values and every gradient, odd shapes, options,
gradient filtering, and the kernels' lowering for NVIDIA GPUs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import export

import xentax
from xentax.losses import _pallas_fused as pf

LOSS = xentax.fused_linear_cross_entropy
SMALL = {"block_rows": 16, "block_cols": 64, "block_dim": 16}


def _case(rng, n, d, v, dtype):
  hidden = jnp.asarray(rng.normal(size=(n, d)), dtype)
  weight = jnp.asarray(rng.normal(size=(d, v)) / np.sqrt(d) * 3, dtype)
  labels = jnp.asarray(rng.integers(0, v, n))
  if n > 2:
    labels = labels.at[2].set(-100)  # a dropped token
  return hidden, weight, labels


def _options(rng, n, v):
  return dict(
    bias=jnp.asarray(rng.normal(size=v), jnp.float32),
    class_weights=jnp.asarray(rng.uniform(0.5, 2.0, v), jnp.float32),
    label_smoothing=jnp.float32(0.1),
    z_loss=jnp.float32(0.01),
    softcap=jnp.float32(8.0),
    sample_weight=jnp.asarray(rng.uniform(0.5, 2.0, n), jnp.float32),
  )


def _value_and_grads(implementation, hidden, weight, labels, reduction, options):
  def loss(hidden, weight, options):
    out = LOSS(
      hidden,
      weight,
      labels,
      ignore_index=-100,
      reduction=reduction,
      implementation=implementation,
      **options,
    )
    return jnp.sum(out * jnp.arange(1.0, out.size + 1)) if reduction == "none" else out

  return jax.value_and_grad(loss, argnums=(0, 1, 2))(hidden, weight, options)


def _assert_same(kernel, xla, rtol, atol):
  np.testing.assert_allclose(kernel[0], xla[0], rtol=rtol, atol=atol)
  names = jax.tree_util.tree_flatten_with_path(xla[1])[0]
  for (path, want), got in zip(names, jax.tree.leaves(kernel[1]), strict=True):
    assert got.dtype == want.dtype, path
    np.testing.assert_allclose(
      np.asarray(got, np.float32),
      np.asarray(want, np.float32),
      rtol=rtol,
      atol=atol,
      err_msg=jax.tree_util.keystr(path),
    )


F32, BF16 = (jnp.float32, (1e-5, 1e-5)), (jnp.bfloat16, (3e-2, 3e-2))


@pytest.mark.parametrize(
  ("dtype", "tol", "reduction"),
  [
    (*F32, "mean"),
    (*BF16, "none"),
    pytest.param(*F32, "none", marks=pytest.mark.slow),
    pytest.param(*BF16, "mean", marks=pytest.mark.slow),
  ],
)
def test_every_option_matches_the_xla_path(dtype, tol, reduction):
  """37 tokens, D = 50, V = 301 (none a multiple of its block), a dropped token, every
  option; gradients with respect to hidden, weight, bias and every float option."""
  rng = np.random.default_rng(0)
  hidden, weight, labels = _case(rng, 37, 50, 301, dtype)
  options = _options(rng, 37, 301)
  with pf.tiling(SMALL):
    kernel = _value_and_grads("pallas", hidden, weight, labels, reduction, options)
  xla = _value_and_grads("xla", hidden, weight, labels, reduction, options)
  _assert_same(kernel, xla, *tol)


@pytest.mark.slow
@settings(deadline=None, max_examples=5)
@given(
  n=st.integers(1, 40),
  d=st.integers(1, 40),
  v=st.integers(1, 150),
  reduction=st.sampled_from(["mean", "sum", "none"]),
  names=st.sets(
    st.sampled_from(
      ["bias", "class_weights", "label_smoothing", "z_loss", "softcap", "sample_weight"]
    )
  ),
  blocks=st.sampled_from([(16, 16, 16), (16, 64, 32), (32, 32, 16)]),
  seed=st.integers(0, 2**16),
)
def test_shapes_options_and_blocks_match_the_xla_path(n, d, v, reduction, names, blocks, seed):
  rng = np.random.default_rng(seed)
  hidden, weight, labels = _case(rng, n, d, v, jnp.float32)
  options = {k: o for k, o in _options(rng, n, v).items() if k in names}
  config = dict(zip(("block_rows", "block_cols", "block_dim"), blocks, strict=True))
  with pf.tiling(config):
    kernel = _value_and_grads("pallas", hidden, weight, labels, reduction, options)
  xla = _value_and_grads("xla", hidden, weight, labels, reduction, options)
  # "none" weighs row n by n + 1, and with it XLA's rounding (at V = 1 its G is ~1e-6, not 0).
  _assert_same(kernel, xla, 1e-5, 1e-5 * (n if reduction == "none" else 1))


@pytest.mark.slow
def test_return_lse_and_token_axes():
  rng = np.random.default_rng(1)
  hidden = jnp.asarray(rng.normal(size=(2, 5, 12)), jnp.float32)
  weight = jnp.asarray(rng.normal(size=(12, 40)) / 3, jnp.float32)
  labels = jnp.asarray(rng.integers(0, 40, (2, 5)))
  with pf.tiling(SMALL):
    loss, lse = LOSS(hidden, weight, labels, return_lse=True, implementation="pallas")
    rows = LOSS(hidden, weight, labels, reduction="none", implementation="pallas")
  want_loss, want_lse = LOSS(hidden, weight, labels, return_lse=True, implementation="xla")
  assert lse.shape == (2, 5) and rows.shape == (2, 5)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
  np.testing.assert_allclose(lse, want_lse, rtol=1e-6)
  np.testing.assert_allclose(jnp.mean(rows), want_loss, rtol=1e-6)


def test_gradient_filtering_stays_within_its_bound():
  """Skipped blocks change each gradient entry by at most the documented bound, and blocks
  of classes far below the targets are skipped."""
  rng = np.random.default_rng(2)
  hidden, weight, _ = _case(rng, 48, 32, 256, jnp.float32)
  labels = jnp.asarray(rng.integers(0, 64, 48))  # every target in the first column block
  bias = jnp.where(jnp.arange(256) < 64, 0.0, -12.0)  # the other blocks: tiny gradients

  def grads(filter_eps):
    def loss(h, w, b):
      return LOSS(
        h, w, labels, bias=b, reduction="sum", implementation="pallas", filter_eps=filter_eps
      )

    return jax.grad(loss, argnums=(0, 1, 2))(hidden, weight, bias)

  eps = 1e-3
  with pf.tiling(SMALL):
    exact, filtered = grads(None), grads(eps)
  bounds = (
    eps * np.sum(np.abs(np.asarray(weight)), axis=1)[None, :],
    eps * np.sum(np.abs(np.asarray(hidden)), axis=0)[:, None],
    eps * hidden.shape[0],
  )
  for got, want, bound in zip(filtered, exact, bounds, strict=True):
    assert np.all(np.abs(np.asarray(got - want)) <= bound * (1 + 1e-5))
  assert np.all(np.asarray(filtered[1][:, 64:]) == 0)  # those blocks were skipped
  assert np.abs(np.asarray(exact[1][:, 64:])).max() > 0
  with pytest.raises(ValueError, match="filter_eps"):
    LOSS(hidden, weight, labels, filter_eps=1e-3)  # XLA: no filtering


def test_pallas_refuses_schedules_and_meshes():
  hidden = jnp.ones((4, 8), jnp.float32)
  weight = jnp.ones((8, 20), jnp.float32)
  labels = jnp.zeros(4, jnp.int32)
  for extra in ({"schedule": "vocab"}, {"block_size": 8}, {"chunk_size": 2}):
    with pytest.raises(ValueError, match="implementation='pallas' runs on unsharded inputs"):
      LOSS(hidden, weight, labels, implementation="pallas", **extra)
  with pytest.raises(ValueError, match="float64 inputs need implementation='xla'"):
    LOSS(hidden.astype(jnp.float64), weight, labels, implementation="pallas")
  assert "pallas_call" not in str(jax.make_jaxpr(lambda h: LOSS(h, weight, labels))(hidden))


@pytest.mark.slow
@pytest.mark.parametrize("options", ["plain", "every option"])
def test_kernels_lower_for_cuda(options):
  """Forward and backward kernels lower to Triton calls for an NVIDIA GPU, on the CPU."""
  hidden = jax.ShapeDtypeStruct((256, 128), jnp.bfloat16)
  weight = jax.ShapeDtypeStruct((128, 1000), jnp.bfloat16)
  labels = jax.ShapeDtypeStruct((256,), jnp.int32)
  extra = {}
  if options != "plain":
    extra = dict(
      bias=jnp.zeros(1000, jnp.float32),
      class_weights=jnp.ones(1000),
      label_smoothing=0.1,
      softcap=30.0,
    )

  def loss(h, w, y):
    return LOSS(h, w, y, implementation="pallas", filter_eps=1e-6, **extra)

  checks = [export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]
  program = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  exported = export.export(program, platforms=["cuda"], disabled_checks=checks)
  text = exported(hidden, weight, labels).mlir_module()
  assert text.count("__gpu$xla.gpu.triton") >= 2  # the forward and the backward kernels


def test_edge_cases_found_in_review():
  """A dropped token holding inf or NaN leaks into no gradient; filtering keeps a bad label's
  NaN; an empty batch and a float64 weight."""
  rng = np.random.default_rng(5)
  hidden, weight, _ = _case(rng, 5, 6, 20, jnp.float32)
  hidden = hidden.at[1, 0].set(jnp.inf).at[3, 2].set(jnp.nan)
  labels = jnp.asarray([1, -100, 3, -100, 5])
  options = {"class_weights": jnp.ones(20), "label_smoothing": 0.1, "softcap": jnp.float32(9.0)}

  def loss(h, w, options, **extra):
    return LOSS(h, w, labels, ignore_index=-100, implementation="pallas", **extra, **options)

  with pf.tiling(SMALL):
    grads = jax.grad(loss, argnums=(0, 1, 2))(hidden, weight, options)
    for leaf in jax.tree.leaves(grads):
      assert np.isfinite(np.asarray(leaf)).all()
    bad = jnp.asarray([1, 25, 3, 4, 5])  # out of range under jit: NaN, filtered or not
    fn = jax.jit(
      jax.grad(lambda h, y: LOSS(h, weight, y, implementation="pallas", filter_eps=1e-6))
    )
    assert np.isnan(np.asarray(fn(jnp.nan_to_num(hidden), bad))).any()
    value, grad = jax.value_and_grad(
      lambda h: LOSS(h, weight, jnp.zeros(0, int), implementation="pallas")
    )(jnp.zeros((0, 6), jnp.float32))
    assert value == 0 and grad.shape == (0, 6)
  with pytest.raises(ValueError, match="float64 inputs need"):
    LOSS(hidden, weight.astype(jnp.float64), labels, implementation="pallas")


@pytest.mark.slow
def test_a_padded_vocabulary_masked_by_a_minus_inf_bias():
  rng = np.random.default_rng(6)
  hidden, weight, _ = _case(rng, 20, 24, 100, jnp.float32)
  labels = jnp.asarray(rng.integers(0, 90, 20))
  options = {"bias": jnp.where(jnp.arange(100) >= 90, -jnp.inf, 0.0).astype(jnp.float32)}
  with pf.tiling(SMALL):
    kernel = _value_and_grads("pallas", hidden, weight, labels, "mean", options)
  xla = _value_and_grads("xla", hidden, weight, labels, "mean", options)
  _assert_same(kernel, xla, 1e-5, 1e-6)
