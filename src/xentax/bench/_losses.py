"""The ``losses`` suite: every xentax loss against optax's closest function and a naive one.

Design notes:
  * "naive" is the textbook formula written with ``jax.nn`` (``-sum(y * log(softmax(x)))``
    and friends) and differentiated by autodiff: what a user would write by hand.
  * Each configuration (loss x shape x dtype x forward / value-and-grad) is one side-by-side
    group; ratios are to optax's function where optax has one, else to the naive one. The
    ratio is the median of per-round ratios (every implementation timed once per round,
    interleaved), with their range as the spread.
  * The probability-input losses have a second yardstick, "naive (checked)": the naive
    formula plus the range checks that xentax's contract needs (a probability or target
    outside [0, 1], or a label out of range, makes the result NaN), written as a user would
    (``jnp.all`` over the inputs). The plain naive formula reads less than the contract
    requires (the sparse one gathers one probability per row), so only the checked one
    measures the formulation rather than the checking.
  * GB/s is the bytes of the logits (or probabilities) divided by the median time: the
    floor every implementation has to read at least once.
"""

from __future__ import annotations

import statistics

import jax
import jax.numpy as jnp
import optax

import xentax
from xentax.bench import _measure


def _sample_weight(x):
  """Per-example weights for the "all options" rows: ``[N]`` in ``[0.5, 1.5]``."""
  return jnp.linspace(0.5, 1.5, x.shape[0], dtype=jnp.float32)


def _binary_options(x, *, elementwise=True, pos_weight=True):
  """The binary losses' array options, all on, for ``[batch, classes]`` scores.

  A per-column ``pos_weight`` and sample weight, per-row ``weights`` and a ``where``
  dropping every eighth row.
  """
  batch, classes = x.shape
  options = {
    "where": jnp.arange(batch)[:, None] % 8 != 7,
    "sample_weight": jnp.linspace(0.5, 2.0, classes, dtype=jnp.float32),
  }
  if elementwise:
    options["weights"] = jnp.linspace(0.5, 2.0, batch, dtype=jnp.float32)[:, None]
  if elementwise and pos_weight:
    options["pos_weight"] = jnp.linspace(0.5, 2.0, classes, dtype=jnp.float32)
  return options


def _checked(value, *in_unit_interval, labels=None, num_classes=None):
  """``value``, or NaN when an input leaves [0, 1] (NaN included) or a label its range."""
  ok = jnp.array(True)
  for a in in_unit_interval:
    ok = ok & jnp.all((a >= 0) & (a <= 1))
  if labels is not None:
    ok = ok & jnp.all((labels >= 0) & (labels < num_classes))
  return jnp.where(ok, value, jnp.nan)


def _naive_jsd(s, t, *, beta):
  """``beta KL(P || M) + (1 - beta) KL(Q || M)`` as written by hand (NaN for -inf logits)."""
  log_q, log_p = jax.nn.log_softmax(s), jax.nn.log_softmax(t)
  q, p = jnp.exp(log_q), jnp.exp(log_p)
  log_m = jnp.log(beta * p + (1 - beta) * q)
  return jnp.mean(jnp.sum(beta * p * (log_p - log_m) + (1 - beta) * q * (log_q - log_m), -1))


def _naive_distillation(s, t, y, *, temperature, alpha):
  """Hinton's loss from optax's KL and integer-label cross-entropy."""
  kl = optax.losses.kl_divergence_with_log_targets(
    jax.nn.log_softmax(s / temperature), jax.nn.log_softmax(t / temperature)
  )
  ce = optax.softmax_cross_entropy_with_integer_labels(s, y)
  return jnp.mean(alpha * temperature**2 * kl + (1 - alpha) * ce)


# name -> (kind of inputs, {implementation: fn(scores, targets)}); the first is the baseline.
# Rows named "xentax (...)" turn options on, so their value differs from the baseline's.
LOSSES = {
  "sparse_categorical_cross_entropy_with_logits": (
    "sparse",
    {
      "optax": lambda x, y: optax.softmax_cross_entropy_with_integer_labels(x, y).mean(),
      "naive": lambda x, y: (
        -jnp.mean(jnp.sum(jax.nn.one_hot(y, x.shape[-1]) * jax.nn.log_softmax(x), -1))
      ),
      "xentax": lambda x, y: xentax.sparse_categorical_cross_entropy_with_logits(x, y),
      "xentax (ignore_index, class_weights, smoothing)": lambda x, y: (
        xentax.sparse_categorical_cross_entropy_with_logits(
          x,
          y,
          ignore_index=-100,
          class_weights=jnp.linspace(0.5, 2.0, x.shape[-1], dtype=jnp.float32),
          label_smoothing=0.1,
        )
      ),
      "xentax (all options: + z_loss, softcap, sample_weight)": lambda x, y: (
        xentax.sparse_categorical_cross_entropy_with_logits(
          x,
          y,
          ignore_index=-100,
          class_weights=jnp.linspace(0.5, 2.0, x.shape[-1], dtype=jnp.float32),
          label_smoothing=0.1,
          z_loss=1e-4,
          softcap=30.0,
          sample_weight=_sample_weight(x),
        )
      ),
    },
  ),
  "categorical_cross_entropy_with_logits": (
    "dense",
    {
      "optax": lambda x, t: optax.softmax_cross_entropy(x, t).mean(),
      "naive": lambda x, t: -jnp.mean(jnp.sum(t * jax.nn.log_softmax(x), -1)),
      "xentax": lambda x, t: xentax.categorical_cross_entropy_with_logits(x, t),
      "xentax (class_weights, smoothing, z_loss, softcap, where, sample_weight)": lambda x, t: (
        xentax.categorical_cross_entropy_with_logits(
          x,
          t,
          class_weights=jnp.linspace(0.5, 2.0, x.shape[-1], dtype=jnp.float32),
          label_smoothing=0.1,
          z_loss=1e-4,
          softcap=30.0,
          where=jnp.arange(x.shape[0]) % 7 != 0,
          sample_weight=jnp.linspace(0.5, 1.5, x.shape[0], dtype=jnp.float32),
        )
      ),
    },
  ),
  # Keras 3's CategoricalFocalCrossentropy(from_logits=True) written with jax.nn (no optax
  # function); alpha = 0.25 and gamma = 2 on both sides.
  "categorical_focal_loss_with_logits": (
    "dense",
    {
      "naive": lambda x, t: (
        -jnp.mean(jnp.sum(0.25 * t * (1 - jax.nn.softmax(x)) ** 2 * jax.nn.log_softmax(x), -1))
      ),
      "xentax": lambda x, t: xentax.categorical_focal_loss_with_logits(x, t),
    },
  ),
  "sparse_categorical_focal_loss_with_logits": (
    "sparse",
    {
      "naive": lambda x, y: (
        -jnp.mean(
          jnp.sum(
            jax.nn.one_hot(y, x.shape[-1]) * (1 - jax.nn.softmax(x)) ** 2 * jax.nn.log_softmax(x),
            -1,
          )
        )
      ),
      "xentax": lambda x, y: xentax.sparse_categorical_focal_loss_with_logits(x, y),
      "xentax (all options: class_weights, smoothing, softcap, sample_weight)": lambda x, y: (
        xentax.sparse_categorical_focal_loss_with_logits(
          x,
          y,
          class_weights=jnp.linspace(0.5, 2.0, x.shape[-1], dtype=jnp.float32),
          label_smoothing=0.1,
          softcap=30.0,
          sample_weight=_sample_weight(x),
        )
      ),
    },
  ),
  "binary_cross_entropy_with_logits": (
    "binary",
    {
      "optax": lambda x, y: optax.sigmoid_binary_cross_entropy(x, y).mean(),
      "naive": lambda x, y: (
        -jnp.mean(y * jnp.log(jax.nn.sigmoid(x)) + (1 - y) * jnp.log(1 - jax.nn.sigmoid(x)))
      ),
      "xentax": lambda x, y: xentax.binary_cross_entropy_with_logits(x, y),
      "xentax (pos_weight, weights, smoothing, where, sample_weight)": lambda x, y: (
        xentax.binary_cross_entropy_with_logits(x, y, label_smoothing=0.1, **_binary_options(x))
      ),
    },
  ),
  "binary_focal_loss_with_logits": (
    "binary",
    {
      "optax": lambda x, y: optax.sigmoid_focal_loss(x, y, alpha=0.25).mean(),
      "xentax": lambda x, y: xentax.binary_focal_loss_with_logits(x, y, alpha=0.25),
      "xentax (smoothing, where, sample_weight)": lambda x, y: xentax.binary_focal_loss_with_logits(
        x, y, alpha=0.25, label_smoothing=0.1, **_binary_options(x, elementwise=False)
      ),
    },
  ),
  "binary_cross_entropy": (
    "binary_probs",
    {
      "naive": lambda p, y: -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p)),
      "naive (checked)": lambda p, y: _checked(
        -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p)), p, y
      ),
      "xentax": lambda p, y: xentax.binary_cross_entropy(p, y),
      "xentax (weights, smoothing, where, sample_weight)": lambda p, y: xentax.binary_cross_entropy(
        p, y, label_smoothing=0.1, **_binary_options(p, pos_weight=False)
      ),
    },
  ),
  "categorical_cross_entropy": (
    "dense_probs",
    {
      "naive": lambda p, t: -jnp.mean(jnp.sum(t * jnp.log(p), -1)),
      "naive (checked)": lambda p, t: _checked(-jnp.mean(jnp.sum(t * jnp.log(p), -1)), p, t),
      "xentax": lambda p, t: xentax.categorical_cross_entropy(p, t),
    },
  ),
  "sparse_categorical_cross_entropy": (
    "sparse_probs",
    {
      "naive": lambda p, y: -jnp.mean(jnp.log(jnp.take_along_axis(p, y[:, None], -1))),
      "naive (checked)": lambda p, y: _checked(
        -jnp.mean(jnp.log(jnp.take_along_axis(p, y[:, None], -1))),
        p,
        labels=y,
        num_classes=p.shape[-1],
      ),
      "xentax": lambda p, y: xentax.sparse_categorical_cross_entropy(p, y),
      "xentax (all options: class_weights, sample_weight)": lambda p, y: (
        xentax.sparse_categorical_cross_entropy(
          p,
          y,
          class_weights=jnp.linspace(0.5, 2.0, p.shape[-1], dtype=jnp.float32),
          sample_weight=_sample_weight(p),
        )
      ),
    },
  ),
  # Issue 12's losses. The "pair" kind: student and teacher logits (the teacher is not
  # differentiated: value-and-grad is with respect to the student, as in distillation).
  "kl_divergence_with_logits": (
    "pair",
    {
      "optax": lambda s, t: optax.losses.kl_divergence_with_log_targets(
        jax.nn.log_softmax(s), jax.nn.log_softmax(t)
      ).mean(),
      "xentax": lambda s, t: xentax.kl_divergence_with_logits(s, t),
      "xentax (temperature, where, sample_weight)": lambda s, t: xentax.kl_divergence_with_logits(
        s,
        t,
        temperature=2.0,
        where=jnp.arange(s.shape[0]) % 7 != 0,
        sample_weight=jnp.linspace(0.5, 1.5, s.shape[0], dtype=s.dtype),
      ),
    },
  ),
  # No optax JSD: the naive one is the textbook formula on two log-softmaxes.
  "jensen_shannon_divergence_with_logits": (
    "pair",
    {
      "naive": lambda s, t: _naive_jsd(s, t, beta=0.5),
      "xentax": lambda s, t: xentax.jensen_shannon_divergence_with_logits(s, t, beta=0.5),
    },
  ),
  # No optax distillation loss: the naive one is what a user writes from optax's parts.
  "distillation_loss": (
    "distill",
    {
      "naive": lambda s, ty: _naive_distillation(s, *ty, temperature=2.0, alpha=0.5),
      "xentax": lambda s, ty: xentax.distillation_loss(s, *ty, temperature=2.0, alpha=0.5),
    },
  ),
  "poly1_cross_entropy_with_logits": (
    "sparse",
    {
      "optax": lambda x, y: optax.losses.poly_loss_cross_entropy(
        x, jax.nn.one_hot(y, x.shape[-1], dtype=x.dtype), epsilon=2.0
      ).mean(),
      "xentax": lambda x, y: xentax.poly1_cross_entropy_with_logits(x, y, epsilon=2.0),
    },
  ),
  # nll_loss reads log-probabilities; optax's integer-label CE on them gives the same value.
  # Both sides take log_softmax of the same logits (the same extra work on each side).
  "nll_loss": (
    "sparse",
    {
      "optax": lambda x, y: optax.softmax_cross_entropy_with_integer_labels(
        jax.nn.log_softmax(x), y
      ).mean(),
      "xentax": lambda x, y: xentax.nll_loss(jax.nn.log_softmax(x), y),
    },
  ),
}


def _config(suite, loss, mode, implementation, baseline, batch, classes, dtype) -> dict:
  """What a record of the losses' suites measured."""
  return {
    "suite": suite,
    "loss": loss,
    "mode": mode,
    "implementation": implementation,
    "baseline": baseline,
    "batch": batch,
    "classes": classes,
    "dtype": jnp.dtype(dtype).name,
  }


def make_inputs(kind, batch, classes, dtype, copies=2, seed=0):
  """A few copies of (scores, targets) for a loss of ``kind``."""
  arg_sets = []
  for key in jax.random.split(jax.random.key(seed), copies):
    k_x, k_y = jax.random.split(key)
    x = jax.random.normal(k_x, (batch, classes), jnp.float32) * 2
    y = jax.random.randint(k_y, (batch,), 0, classes)
    if kind == "sparse":
      args = (x.astype(dtype), y)
    elif kind == "sparse_probs":
      args = (jax.nn.softmax(x).astype(dtype), y)
    elif kind == "dense":
      args = (x.astype(dtype), jax.nn.one_hot(y, classes, dtype=dtype))
    elif kind in ("pair", "distill"):
      teacher = (jax.random.normal(k_y, (batch, classes), jnp.float32) * 2).astype(dtype)
      args = (x.astype(dtype), teacher if kind == "pair" else (teacher, y))
    elif kind == "dense_probs":
      args = (jax.nn.softmax(x).astype(dtype), jax.nn.one_hot(y, classes, dtype=dtype))
    elif kind == "binary":
      args = (x.astype(dtype), (x > 0).astype(dtype))
    else:  # binary_probs
      args = (jax.nn.sigmoid(x).astype(dtype), (x > 0).astype(dtype))
    arg_sets.append(args)
  return arg_sets


def run(
  grid,
  dtypes,
  *,
  losses=None,
  repeats=5,
  modes=("forward", "value_and_grad"),
  naive=True,
) -> list[dict]:
  """Time every loss of ``losses`` (all by default) over ``grid`` x ``dtypes``.

  Args:
    grid: ``(batch, classes)`` pairs.
    dtypes: input dtypes (float32, bfloat16).
    losses: names from :data:`LOSSES`; all by default.
    repeats: timed calls per implementation.
    modes: ``"forward"`` and/or ``"value_and_grad"``.
    naive: also time the ``"naive"`` rows of losses whose baseline is optax (a loss whose
      baseline is the naive formula always times it).

  Returns:
    One record per (loss, shape, dtype, mode, implementation).
  """
  records = []
  device = _measure.device_info()
  for name in losses or list(LOSSES):
    kind, impls = LOSSES[name]
    if not naive and next(iter(impls)) != "naive":
      impls = {impl: fn for impl, fn in impls.items() if impl != "naive"}
    for batch, classes in grid:
      for dtype in dtypes:
        arg_sets = make_inputs(kind, batch, classes, dtype)
        nbytes = arg_sets[0][0].nbytes
        for mode in modes:
          compiled, compile_s, memory = {}, {}, {}
          for impl, fn in impls.items():
            target = fn if mode == "forward" else jax.value_and_grad(fn)
            compiled[impl], compile_s[impl] = _measure.compile_ahead(target, *arg_sets[0])
            memory[impl] = _measure.memory_bytes(compiled[impl])
          timings = _measure.time_side_by_side(
            compiled, arg_sets, repeats=repeats, compile_seconds=compile_s
          )
          baseline = next(iter(impls))
          for impl, timing in timings.items():
            ratios = timing.ratios_to(timings[baseline])
            records.append(
              {
                **_config("losses", name, mode, impl, baseline, batch, classes, dtype),
                "compile_s": timing.compile_s,
                "median_s": timing.median_s,
                "spread": timing.spread,
                "repeats": timing.repeats,
                "calls_per_sample": timing.calls,
                # Median of the per-round ratios (each round times every implementation
                # back to back), and their range: robust to drift on a shared machine.
                "ratio": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "gbps": nbytes / timing.median_s / 1e9,
                **memory[impl],
                "peak_device_bytes": _measure.peak_device_bytes(),
                **device,
              }
            )
  return records


# The memory table's baseline for a loss whose LOSSES baseline is not its plain counterpart:
# the focal losses are held to plain softmax cross-entropy (optax), as the losses they refine.
MEMORY_BASELINES = {
  "categorical_focal_loss_with_logits": "categorical_cross_entropy_with_logits",
  "sparse_categorical_focal_loss_with_logits": "sparse_categorical_cross_entropy_with_logits",
}

# A loss may hold at most this many temporary bytes more than its baseline.
MEMORY_ALLOWANCE_BYTES = 16 * 2**20


def memory_table(batch, classes, dtype=jnp.float32, *, losses=None) -> list[dict]:
  """Temporaries of every loss's forward and value-and-grad against its baseline's.

  Compiled only (``compiled.memory_analysis()``), nothing runs. The baseline is the first
  implementation of :data:`LOSSES` (optax's function, else the naive formula), or that of
  the loss named in :data:`MEMORY_BASELINES`.

  Returns:
    One record per (loss, mode, implementation): ``"xentax"`` and the baseline, with
    ``over_baseline_bytes`` on the xentax rows.
  """
  records = []
  device = _measure.device_info()
  for name in losses or list(LOSSES):
    kind, impls = LOSSES[name]
    base_impls = LOSSES[MEMORY_BASELINES.get(name, name)][1]
    baseline = next(iter(base_impls))
    fns = {baseline: base_impls[baseline], "xentax": impls["xentax"]}
    args = make_inputs(kind, batch, classes, dtype, copies=1)[0]
    for mode in ("forward", "value_and_grad"):
      temp = {}
      for impl, fn in fns.items():
        target = fn if mode == "forward" else jax.value_and_grad(fn)
        memory = _measure.memory_bytes(_measure.compile_ahead(target, *args)[0])
        temp[impl] = memory["temp_bytes"]
        config = _config("memory", name, mode, impl, baseline, batch, classes, dtype)
        records.append({**config, **memory, **device})
      records[-1]["over_baseline_bytes"] = temp["xentax"] - temp[baseline]
  return records
