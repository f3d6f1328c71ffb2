"""The engine's guarded formulas run in blocks of rows: same results, bounded temporaries."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import xentax
from xentax.bench import _losses as bench_losses
from xentax.losses import _engine


def _row_fn(x, valid, t):
  """Per-row outputs of mixed shapes, reading every input."""
  total = jnp.sum(x * t["scale"], axis=-1)
  return total + jnp.where(valid, 0.0, 1.0), x[..., :2] * 2


@settings(max_examples=25, deadline=None)
@given(
  batch_shape=st.sampled_from([(1,), (5,), (7,), (2, 3), (3, 1, 4)]),
  rows_per_block=st.integers(1, 9),
)
def test_by_row_blocks_equals_one_call(batch_shape, rows_per_block, monkeypatch_module):
  """Every block size (the last block overlapping its predecessor), every batch shape."""
  classes = 5
  key = jax.random.key(sum(batch_shape) + rows_per_block)
  x = jax.random.normal(key, (*batch_shape, classes))
  valid = jnp.arange(np.prod(batch_shape)).reshape(batch_shape) % 3 != 0
  t = {"scale": jnp.linspace(0.5, 2.0, np.prod(batch_shape) * classes).reshape(x.shape)}
  expected = _row_fn(x, valid, t)
  monkeypatch_module.setattr(_engine, "GUARDED_BLOCK_BYTES", rows_per_block * classes * 4)
  got = jax.jit(lambda x, v, t: _engine.by_row_blocks(_row_fn, batch_shape, x, v, t))(x, valid, t)
  for g, e in zip(got, expected, strict=True):
    np.testing.assert_array_equal(g, e)


@pytest.fixture(scope="module")
def monkeypatch_module():
  with pytest.MonkeyPatch.context() as patch:
    yield patch


def test_by_row_blocks_passes_none_rows_and_empty_batches():
  fn = lambda x, valid: jnp.sum(x, -1) if valid is None else None  # noqa: E731
  x = jnp.ones((4, 3))
  np.testing.assert_array_equal(_engine.by_row_blocks(fn, (4,), x, None), jnp.full(4, 3.0))
  assert _engine.by_row_blocks(fn, (0,), jnp.ones((0, 3)), None).shape == (0,)


def _inputs(batch=12, classes=16):
  """Logits whose first rows send every fast path to its guard: a ``-inf`` logit where the
  target has no mass, a logit far above the target's."""
  x = jax.random.normal(jax.random.key(0), (batch, classes))
  x = x.at[0, 3].set(-jnp.inf).at[1, 5].set(200.0)
  labels = jnp.arange(batch) % 3  # never 3 or 5 in rows 0 and 1
  teacher = jax.random.normal(jax.random.key(1), (batch, classes)).at[2, 7].set(-jnp.inf)
  return x, labels, jax.nn.one_hot(labels, classes), teacher


# loss(x, labels, one_hot, teacher), differentiated in x.
GUARDED = {
  "sparse_ce": lambda x, y, t, s: xentax.sparse_categorical_cross_entropy_with_logits(
    x, y, label_smoothing=0.1, softcap=30.0
  ),
  "sparse_focal": lambda x, y, t, s: xentax.sparse_categorical_focal_loss_with_logits(
    x, y, label_smoothing=0.1, softcap=30.0
  ),
  "sparse_focal_plain": lambda x, y, t, s: xentax.sparse_categorical_focal_loss_with_logits(x, y),
  "categorical": lambda x, y, t, s: xentax.categorical_cross_entropy_with_logits(x, t, z_loss=1e-3),
  "categorical_focal": lambda x, y, t, s: xentax.categorical_focal_loss_with_logits(x, t),
  # The student finite where the teacher has mass; the teacher's -inf takes the guard.
  "kl": lambda x, y, t, s: xentax.kl_divergence_with_logits(
    jnp.where(jnp.isinf(x), 0.0, x), s, temperature=2.0
  ),
  "jsd": lambda x, y, t, s: xentax.jensen_shannon_divergence_with_logits(x, s),
  "bce": lambda x, y, t, s: xentax.binary_cross_entropy_with_logits(x, t, pos_weight=2.0),
  "binary_focal": lambda x, y, t, s: xentax.binary_focal_loss_with_logits(x, t),
}


@pytest.mark.parametrize("name", list(GUARDED))
@pytest.mark.parametrize("rows_per_block", [1, 5])
def test_guarded_formulas_in_blocks_match_one_block(name, rows_per_block, monkeypatch):
  """The fallback taken in blocks of rows gives the value and gradient of one block (every
  row sent to it, as a row the fast formula cannot handle would be)."""
  args = _inputs()
  loss = GUARDED[name]
  dispatch = _engine.fast_or_guarded
  monkeypatch.setattr(
    _engine,
    "fast_or_guarded",
    lambda fast, guarded, ok, *rows: dispatch(fast, guarded, False, *rows),
  )
  whole = jax.jit(jax.value_and_grad(lambda x, *a: loss(x, *a)))(*args)
  monkeypatch.setattr(_engine, "GUARDED_BLOCK_BYTES", rows_per_block * args[0].shape[-1] * 4)
  blocked = jax.jit(jax.value_and_grad(lambda x, *a: loss(x, *a)))(*args)
  assert np.isfinite(whole[0])
  for b, w in zip(blocked, whole, strict=True):
    np.testing.assert_allclose(b, w, rtol=2e-6, atol=1e-7)


# Where the default configuration holds more than its baseline: (loss, mode) -> why.
OVER_BASELINE: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize("name", list(bench_losses.LOSSES))
def test_no_loss_holds_more_temporaries_than_its_baseline(name, monkeypatch):
  """Every loss's forward and value-and-grad, default options, at most its baseline's
  temporaries plus a few blocks (XLA reserves both branches of a ``lax.cond``, so an
  untaken guard must cost blocks of rows, not logits-sized arrays)."""
  monkeypatch.setattr(_engine, "GUARDED_BLOCK_BYTES", 2**14)
  batch, classes = 256, 2048
  records = bench_losses.memory_table(batch, classes, losses=[name])
  allowance = batch * classes * 4 // 8
  for r in records:
    if r["implementation"] != "xentax":
      continue
    over = r["over_baseline_bytes"] > allowance
    assert over == ((name, r["mode"]) in OVER_BASELINE), (r["mode"], r["over_baseline_bytes"])


@pytest.mark.parametrize("name", list(GUARDED))
@pytest.mark.parametrize("edge", [False, True], ids=["finite", "guarded"])
def test_plain_formulation_matches_fused(name, edge, monkeypatch):
  """The formulation registry's two entries compute the same value and gradient."""
  args = _inputs()
  if not edge:
    args = tuple(jnp.nan_to_num(a, neginf=-3.0, posinf=3.0) for a in args)
  loss = GUARDED[name]
  monkeypatch.setenv("XENTAX_FORMULATION", "fused")
  fused = jax.jit(jax.value_and_grad(lambda x, *a: loss(x, *a)))(*args)
  monkeypatch.setenv("XENTAX_FORMULATION", "plain")
  plain = jax.jit(jax.value_and_grad(lambda x, *a: loss(x, *a)))(*args)
  assert np.isfinite(fused[0])
  for p, f in zip(plain, fused, strict=True):
    np.testing.assert_allclose(p, f, rtol=1e-10, atol=1e-12)


def test_the_formulation_follows_the_backend_unless_overridden(monkeypatch):
  monkeypatch.delenv("XENTAX_FORMULATION", raising=False)
  assert _engine.formulation() == _engine.FORMULATIONS.get(jax.default_backend(), "plain")
  monkeypatch.setenv("XENTAX_FORMULATION", "fast")
  with pytest.raises(ValueError, match="XENTAX_FORMULATION must be 'fused' or 'plain'"):
    _engine.formulation()


def _fast_taken(loss, args, monkeypatch) -> list[bool]:
  """Whether each dispatch of an eager (concrete) call took the fast formula."""
  dispatch, taken = _engine.fast_or_guarded, []

  def recording(fast, guarded, ok, *rows):
    taken.append(bool(ok))
    return dispatch(fast, guarded, ok, *rows)

  monkeypatch.setattr(_engine, "fast_or_guarded", recording)
  monkeypatch.setenv("XENTAX_FORMULATION", "fused")
  jax.value_and_grad(lambda x, *a: loss(x, *a))(*args)
  return taken


MASKED = {
  "sparse_ce": lambda x, y, t, s: xentax.sparse_categorical_cross_entropy_with_logits(x, y),
  "sparse_ce_z_loss": lambda x, y, t, s: xentax.sparse_categorical_cross_entropy_with_logits(
    x, y, z_loss=1e-3
  ),
  "sparse_focal": GUARDED["sparse_focal_plain"],
}


@pytest.mark.parametrize("name", list(MASKED))
def test_a_masked_vocabulary_takes_the_fast_formula(name, monkeypatch):
  """``-inf`` logits on classes other than the label are exact in the sparse losses' fast
  formulas: no fallback, the value and gradient of the guarded formula."""
  x, labels, one_hot, teacher = _inputs()
  masked = (jnp.arange(x.shape[-1]) % 4 == 3) & (one_hot == 0)
  x = jnp.where(masked, -jnp.inf, jnp.nan_to_num(x, neginf=-3.0))
  args = (x, labels, one_hot, teacher)
  taken = _fast_taken(MASKED[name], args, monkeypatch)
  assert all(taken), taken  # no dispatch at all is no fallback either
  fused = jax.value_and_grad(lambda x, *a: MASKED[name](x, *a))(*args)
  monkeypatch.setenv("XENTAX_FORMULATION", "plain")
  plain = jax.value_and_grad(lambda x, *a: MASKED[name](x, *a))(*args)
  for p, f in zip(plain, fused, strict=True):
    np.testing.assert_allclose(f, p, rtol=1e-10, atol=1e-12)
