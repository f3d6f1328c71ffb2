"""What single fused passes cost on XLA:CPU: the measurements behind the issue-11 notes.

    python experiments/benchmarks/pass_costs.py softcap    # tanh vs clip + tanh vs exp
    python experiments/benchmarks/pass_costs.py focal      # categorical focal, by part
    python experiments/benchmarks/pass_costs.py probs      # probability CE rows, in pieces or not
    python experiments/benchmarks/pass_costs.py keep       # kept vs recomputed exponentials
    python experiments/benchmarks/pass_costs.py focal_smoothing [NxC]  # closed form vs autodiff
    python experiments/benchmarks/pass_costs.py every_option  # every option on, value-and-grad

Each prints median milliseconds over 5 interleaved rounds and the median per-round ratio
to the first row (xentax.bench._measure.time_side_by_side). Results seen on the idle
2-core CPU are in pass_costs.md.
"""

import statistics
import sys

import jax
import jax.numpy as jnp
from jax import lax

import xentax
from xentax.bench import _measure
from xentax.losses import _rows


def _report(fns, args, repeats=5):
  compiled = {k: _measure.compile_ahead(jax.jit(f), *args[0])[0] for k, f in fns.items()}
  timings = _measure.time_side_by_side(compiled, args, repeats=repeats, max_spread=None)
  first = next(iter(timings.values()))
  for name, t in timings.items():
    ratio = statistics.median(t.ratios_to(first))
    print(f"{name:16s} {t.median_s * 1e3:8.1f} ms  ratio {ratio:.2f}")


def softcap():
  x = jax.random.normal(jax.random.key(0), (4096, 32768)) * 2
  c = 30.0
  _report(
    {
      "exp": lambda x: jnp.sum(jnp.exp(x)),
      "tanh": lambda x: jnp.sum(c * jnp.tanh(x / c)),
      "clip_tanh": lambda x: jnp.sum(c * jnp.tanh(jnp.clip(x / c, -40, 40))),
      "exp_of_tanh": lambda x: jnp.sum(jnp.exp(c * jnp.tanh(x / c))),
    },
    [(x,), (x + 0.1,)],
  )


def focal():
  n, c = 4096, 32768
  k1, k2 = jax.random.split(jax.random.key(0))
  x = jax.random.normal(k1, (n, c)) * 2
  t = jax.nn.one_hot(jax.random.randint(k2, (n,), 0, c), c)

  def core(x, t, check, shift=True):
    h = lax.stop_gradient(jnp.max(x[:, :128], -1))
    lse = h + jnp.log(jnp.sum(jnp.exp(x - h[:, None]), -1))
    if not shift:
      lse = jnp.log(jnp.sum(jnp.exp(x), -1))
    log_p = x - lse[:, None]
    losses = jnp.sum(0.25 * t * lax.integer_pow(-jnp.expm1(log_p), 2) * -log_p, -1)
    if check:
      bad = ~(jnp.min(t, -1) >= 0) | ~(jnp.max(t, -1) <= 1)
      losses = jnp.where(bad, jnp.nan, losses)
    return jnp.mean(losses)

  _report(
    {
      "naive": lambda x, t: (
        -jnp.mean(jnp.sum(0.25 * t * (1 - jax.nn.softmax(x)) ** 2 * jax.nn.log_softmax(x), -1))
      ),
      "xentax": lambda x, t: xentax.categorical_focal_loss_with_logits(x, t),
      "core": lambda x, t: core(x, t, False),
      "core_check": lambda x, t: core(x, t, True),
      "core_unshifted": lambda x, t: core(x, t, False, shift=False),
      "t_min_max": lambda x, t: jnp.mean(jnp.min(t, -1)) + jnp.mean(jnp.max(t, -1)),
      "exp_sum": lambda x, t: jnp.mean(jnp.log(jnp.sum(jnp.exp(x), -1))),
    },
    [(x, t), (x + 0.1, t)],
  )


def probs():
  n, c = 1024, 131072
  pieces = _rows.row_pieces(c)
  k1, k2 = jax.random.split(jax.random.key(0))
  p = jax.nn.softmax(jax.random.normal(k1, (n, c)) * 2)
  t = jax.nn.one_hot(jax.random.randint(k2, (n,), 0, c), c)

  def rows(p, t, main_pieces, check_pieces):
    pp, tp = _rows.split_rows(p, main_pieces), _rows.split_rows(t, main_pieces)
    losses = -_rows.row_reduce(tp * jnp.maximum(jnp.log(pp), -100.0), main_pieces)
    pp, tp = _rows.split_rows(p, check_pieces), _rows.split_rows(t, check_pieces)
    outside = ~((pp >= 0) & (pp <= 1)) | ~((tp >= 0) & (tp <= 1))
    bad = _rows.row_reduce(outside, check_pieces, jnp.any)
    return jnp.mean(jnp.where(bad, jnp.nan, losses))

  _report(
    {
      "naive": lambda p, t: -jnp.mean(jnp.sum(t * jnp.log(p), -1)),
      "all_pieces": lambda p, t: rows(p, t, pieces, pieces),
      "main_pieces": lambda p, t: rows(p, t, pieces, 1),
      "check_pieces": lambda p, t: rows(p, t, 1, pieces),
      "no_pieces": lambda p, t: rows(p, t, 1, 1),
    },
    [(p, t), (p * 0.999, t)],
  )


def keep():
  """Value-and-grad of the sparse and categorical CE from logits at C = 4096 with the
  exponentials kept for the backward pass against recomputing them there, whatever the
  default thresholds in ``losses._rows`` would choose (each patched while tracing)."""
  c = 4096
  for loss, limit in [
    ("sparse_categorical_cross_entropy_with_logits", "SPARSE_KEEP_EXP_MAX_ENTRIES"),
    ("categorical_cross_entropy_with_logits", "DENSE_KEEP_EXP_MAX_ENTRIES"),
  ]:
    fn = getattr(xentax, loss)
    for n in (256, 512, 1024, 1536, 2048):
      k1, k2 = jax.random.split(jax.random.key(n))
      x = jax.random.normal(k1, (n, c)) * 2
      y = jax.random.randint(k2, (n,), 0, c)
      t = y if "sparse" in loss else jax.nn.one_hot(y, c)
      args = [(x, t), (x + 0.1, t)]
      compiled = {}
      saved = getattr(_rows, limit)
      try:
        for name, max_entries in [("recompute", 0), ("keep", n * c)]:
          setattr(_rows, limit, max_entries)
          # A new function each time, so that JAX traces it under the patched threshold.
          grad = jax.value_and_grad(lambda x, t, fn=fn: fn(x, t))
          compiled[name] = _measure.compile_ahead(grad, *args[0])[0]
      finally:
        setattr(_rows, limit, saved)
      timings = _measure.time_side_by_side(compiled, args, repeats=9, max_spread=None)
      ratio = statistics.median(timings["keep"].ratios_to(timings["recompute"]))
      print(f"{loss[:30]:30s} [{n}, {c}]  keep / recompute {ratio:.2f}")


def focal_smoothing(shape="256x4096"):
  """Value-and-grad at [256, 4096] (or ``shape``, "NxC"): the sparse focal loss plain, with
  label smoothing and with every option, each through its custom_jvp (the closed-form logit
  gradient) and through autodiff of the same value (the gradient before the custom_jvp)."""
  from xentax.losses import _sparse, _sparse_focal

  n, c = (int(v) for v in shape.split("x"))
  x = jax.random.normal(jax.random.key(0), (n, c))
  y = jnp.arange(n) % c
  w = jnp.linspace(0.5, 2.0, c)
  focal = xentax.sparse_categorical_focal_loss_with_logits
  every = dict(label_smoothing=0.1, class_weights=w, softcap=30.0, sample_weight=jnp.ones(n))

  def autodiff(x, label_smoothing=0.0, class_weights=None, softcap=None, sample_weight=None):
    inputs = _sparse.prepare_sparse(
      "focal", x, y, axis=-1, class_weights=class_weights, ignore_index=None, where=None
    )
    eps = None if label_smoothing == 0 else jnp.float32(label_smoothing)
    cap = None if softcap is None else jnp.float32(softcap)
    losses = _sparse_focal._focal_losses_and_stats(inputs, eps, jnp.float32(2.0), cap)[0]
    weights = jnp.ones(n) if sample_weight is None else sample_weight
    denominator = n if class_weights is None else jnp.sum(class_weights[y])
    return jnp.sum(weights * losses) / denominator

  _report(
    {
      "focal": jax.value_and_grad(lambda x: focal(x, y)),
      "focal_autodiff": jax.value_and_grad(autodiff),
      "ls": jax.value_and_grad(lambda x: focal(x, y, label_smoothing=0.1)),
      "ls_autodiff": jax.value_and_grad(lambda x: autodiff(x, label_smoothing=0.1)),
      "every": jax.value_and_grad(lambda x: focal(x, y, **every)),
      "every_autodiff": jax.value_and_grad(lambda x: autodiff(x, **every)),
    },
    [(x,), (x + 0.1,)],
  )


def every_option():
  """Value-and-grad at [4096, 32768]: the categorical cross-entropy plain, and the
  categorical, sparse and sparse focal losses with every option (softcap included)."""
  n, c = 4096, 32768
  k1, k2 = jax.random.split(jax.random.key(0))
  x = jax.random.normal(k1, (n, c)) * 2
  t = jax.nn.softmax(jax.random.normal(k2, (n, c)))
  y = jnp.arange(n) % c
  common = dict(class_weights=jnp.linspace(0.5, 2.0, c), softcap=30.0, sample_weight=jnp.ones((n,)))
  smoothing = dict(common, label_smoothing=0.1)
  cat = dict(smoothing, z_loss=1e-4, where=jnp.ones((n,), bool))
  sparse = dict(smoothing, z_loss=1e-4, ignore_index=-1)
  _report(
    {
      "cat_plain": jax.value_and_grad(xentax.categorical_cross_entropy_with_logits),
      "cat_every": jax.value_and_grad(
        lambda x, t: xentax.categorical_cross_entropy_with_logits(x, t, **cat)
      ),
      "sparse_every": jax.value_and_grad(
        lambda x, t: xentax.sparse_categorical_cross_entropy_with_logits(x, y, **sparse)
      ),
      "focal_every": jax.value_and_grad(
        lambda x, t: xentax.sparse_categorical_focal_loss_with_logits(x, y, **smoothing)
      ),
    },
    [(x, t), (x + 0.1, t)],
  )


if __name__ == "__main__":
  {
    "softcap": softcap,
    "focal": focal,
    "probs": probs,
    "keep": keep,
    "focal_smoothing": focal_smoothing,
    "every_option": every_option,
  }[sys.argv[1]](*sys.argv[2:])
