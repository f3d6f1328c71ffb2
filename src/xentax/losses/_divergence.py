r"""Divergences between two sets of logits: KL, generalised Jensen-Shannon, distillation.

Design rules:
  * ``0 log 0 = 0``: a log-ratio is selected before it is multiplied (a double ``where``),
    so neither a value nor a derivative meets ``0 * inf``.
  * Rows are masked by a per-row factor ``keep`` (1 kept, 0 dropped, NaN bad) on ``[...]``
    results, never by a select over ``[..., C]`` logits (a pass of its own).
  * The common case is one guard-free fused pass per row (a select splits it on XLA:CPU);
    a kept row whose fast value is NaN sends the batch to the guarded formula.
  * Both divergences are ``custom_jvp`` functions whose closed-form tangents are built
    from ``[...]`` statistics: reverse mode is one elementwise pass per side.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from xentax.losses import _common, _engine, _frame, _reduce, _rows, _validate
from xentax.losses._sparse import sparse_categorical_cross_entropy_with_logits
from xentax.losses._sparse_terms import prepare_labels

_SymbolicZero = jax.custom_derivatives.SymbolicZero


class _Pair(NamedTuple):
  """Two logit arrays after the divergences' entry frame (:func:`_prepare_pair`)."""

  s: jax.Array  # [..., C] student logits, class axis last, compute dtype, not yet scaled
  t: jax.Array  # [..., C] teacher logits, likewise
  valid: jax.Array  # [...] bool
  keep: jax.Array  # [...] 1 kept, 0 dropped, NaN kept but bad
  inv: jax.Array  # 1 / T
  sample_weight: jax.Array | None  # [...], checked

  def reduce(self, losses, reduction: str) -> jax.Array:
    """Close the entry frame: the per-example ``losses`` masked, weighted and reduced."""
    return _reduce.reduce_losses(
      losses, valid=self.valid, sample_weight=self.sample_weight, reduction=reduction
    )


def _prepare_pair(
  fn_name,
  student_logits,
  teacher_logits,
  *,
  axis,
  where,
  temperature,
  sample_weight,
  reduction,
  bad=None,
) -> _Pair:
  """The divergences' entry frame: two logit arrays (class axis last, compute dtype),
  ``1 / T``, the mask, the sample weights and ``keep``: 1 for a kept row, 0 for a dropped
  one, NaN for a kept row marked by ``bad`` (per example, a traced scalar, or None) or by a
  traced ``temperature`` outside its domain."""
  _reduce.check_reduction(fn_name, reduction)
  _validate.float_array(fn_name, "student_logits", student_logits)
  _validate.float_array(fn_name, "teacher_logits", teacher_logits)
  bad = _validate.any_bad(bad, _validate.options(fn_name, temperature=temperature))
  s = jnp.asarray(student_logits)
  t = jnp.asarray(teacher_logits)
  _validate.check_same_shape(fn_name, "student_logits", s, "teacher_logits", t)
  axis = _validate.normalize_axis(fn_name, axis, s.ndim)
  dtype = _common.compute_dtype(jnp.result_type(s, t))
  s = jnp.moveaxis(s, axis, -1).astype(dtype)
  t = jnp.moveaxis(t, axis, -1).astype(dtype)
  valid = _validate.broadcast_mask(fn_name, where, s.shape[:-1])
  inv_temperature = 1 / jnp.asarray(temperature, dtype)
  keep = valid.astype(dtype)
  if bad is not None:
    keep = keep + _common.nan_where(valid & bad, dtype)
  sample_weight = _validate.sample_weights(fn_name, sample_weight, valid.shape, dtype)
  return _Pair(s, t, valid, keep, inv_temperature, sample_weight)


def _apply_keep(x, keep) -> jax.Array:
  """``keep * x`` with dropped rows (``keep == 0``) exactly 0 even where ``x`` is NaN."""
  if x.ndim > keep.ndim:
    keep = keep[..., None]
  return jnp.where(keep == 0, jnp.zeros((), x.dtype), keep * x)


def _zero_dropped(x, keep) -> jax.Array:
  return jnp.where(keep[..., None] == 0, jnp.zeros((), x.dtype), x)


def _log_softmax(x) -> jax.Array:
  return x - _rows.logsumexp(x)[..., None]


def _log_ratio(p, log_p, log_q):
  """``(log p - log q, p > 0)``, the ratio 0 where ``p = 0`` (selected before any product)."""
  has_mass = ~(p <= 0)  # a NaN probability stays NaN
  return jnp.where(has_mass, log_p - jnp.where(has_mass, log_q, 0.0), 0.0), has_mass


def _kl_and_grad(p, log_p, log_q, keep, kl=None):
  """``KL(P || Q) = sum_c p (log p - log q)`` (unless given) and its gradient in the logits
  of ``P``, ``p (log p - log q - KL)``, both times ``keep``."""
  ratio, has_mass = _log_ratio(p, log_p, log_q)
  if kl is None:
    kl = jnp.sum(jnp.where(has_mass, p * ratio, 0.0), axis=-1)
  grad = jnp.where(has_mass, p * (ratio - kl[..., None]), 0.0)
  return _apply_keep(kl, keep), _apply_keep(grad, keep)


def _weighted_log_ratio(p, log_p, log_q) -> jax.Array:
  """``sum_c p_c (log p_c - log q_c)`` with ``0 log 0 = 0``."""
  ratio, has_mass = _log_ratio(p, log_p, log_q)
  return jnp.sum(jnp.where(has_mass, p * ratio, 0.0), axis=-1)


def _safe_kl(s, t) -> jax.Array:
  """The guarded ``KL(softmax(t) || softmax(s))``: the fallback for rows with ``-inf``."""
  log_ps = _log_softmax(s)
  log_pt = _log_softmax(t)
  return _weighted_log_ratio(jnp.exp(log_pt), log_pt, log_ps)


def _lse_and_exp(x, pieces: int = 1, inv=None):
  """``(lse, exp((x - m) inv), sum exp((x - m) inv))`` per row of ``x inv`` (``inv`` None:
  1), guard-free, ``lse`` and the sum shaped to broadcast against ``x`` (or its pieces)."""
  rows = _rows.row_axes(pieces)
  m = jax.lax.stop_gradient(_rows.row_reduce(x, pieces, jnp.max))[rows]
  if inv is None:
    exp_shifted = jnp.exp(x - m)
  else:
    # The scaling stays inside the fused reductions: a separate `x / T` pass is not fused.
    exp_shifted = jnp.exp((x - m) * inv)
    m = m * inv
  exp_sum = _rows.row_reduce(exp_shifted, pieces)[rows]
  return m + jnp.log(exp_sum), exp_shifted, exp_sum


def _with_fallback(fast, keep, safe, s, t) -> jax.Array:
  """``keep * fast`` unless a kept row is NaN, then ``keep * safe(s, t)`` for every row,
  dropped rows' logits zeroed first."""
  # Dropped rows may hold anything and bad rows are NaN on either path: neither falls back.
  ok = ~jnp.any(jnp.isnan(fast) & (keep == 1))

  def guarded(s, t, keep):
    return safe(_zero_dropped(s, keep), _zero_dropped(t, keep))

  return _apply_keep(_engine.fast_or_guarded(fast, guarded, ok, s, t, keep), keep)


def _kl_value(s, t, inv, keep):
  """``(KL, lse_s, lse_t)`` per row of ``s * inv``, ``t * inv`` (the two ``[..., 1]``)."""
  pieces = _rows.row_pieces(s.shape[-1])
  sp, tp = _rows.split_rows(s, pieces), _rows.split_rows(t, pieces)
  lse_s = _lse_and_exp(sp, pieces, inv)[0]
  lse_t, exp_t, exp_sum_t = _lse_and_exp(tp, pieces, inv)
  # The teacher's exponentials are shared with its exp-sum in one fused loop; rows in
  # pieces recompute them (shared ones would be written to memory between the pieces).
  p_t = exp_t * (1 / exp_sum_t) if pieces == 1 else jnp.exp(tp * inv - lse_t)
  # sum_c p_t ((t - s) / T - (lse_t - lse_s)): a -inf teacher logit gives 0 * -inf = NaN,
  # which sends the batch to the guarded form.
  kl = _rows.row_reduce(p_t * ((tp - sp) * inv - (lse_t - lse_s)), pieces)
  safe = lambda s, t: _safe_kl(s * inv, t * inv)  # noqa: E731
  rows = s.shape[:-1] + (1,)
  return _with_fallback(kl, keep, safe, s, t), lse_s.reshape(rows), lse_t.reshape(rows)


@jax.custom_jvp
def kl_per_example(student_logits, teacher_logits, inv_temperature, keep) -> jax.Array:
  """``keep * KL(softmax(t / T) || softmax(s / T))`` per row (``keep``: :func:`_prepare_pair`).

  Tangent, with ``G_s = p_s - p_t`` and ``G_t = p_t (log p_t - log p_s - KL)`` the
  gradients in the scaled logits: ``(sum_c G_s ds + G_t dt) / T + (sum_c G_s s + G_t t)
  d(1 / T)``; ``keep`` is a constant.
  """
  return _kl_value(student_logits, teacher_logits, inv_temperature, keep)[0]


def _kl_per_example_jvp(primals, tangents):
  s, t, inv, keep = primals
  ds, dt, d_inv, _ = tangents
  kl, lse_s, lse_t = _kl_value(s, t, inv, keep)
  log_ps, log_pt = s * inv - lse_s, t * inv - lse_t
  p_s, p_t = jnp.exp(log_ps), jnp.exp(log_pt)
  g_t = _kl_and_grad(p_t, log_pt, log_ps, keep, kl)[1]
  g_s = _apply_keep(p_s - p_t, keep)
  tangent = jnp.zeros_like(kl)
  for g, dx in ((g_s, ds), (g_t, dt)):
    if not isinstance(dx, _SymbolicZero):
      tangent = tangent + jnp.sum(g * dx, axis=-1) * inv
  if not isinstance(d_inv, _SymbolicZero):
    # A -inf logit has G = 0 (0 * inf = 0); a dropped row's logits are zeroed first.
    s, t = _zero_dropped(s, keep), _zero_dropped(t, keep)
    scaled = _common.safe_mul(g_s, s) + _common.safe_mul(g_t, t)
    tangent = tangent + jnp.sum(scaled, axis=-1) * d_inv
  return kl, tangent


kl_per_example.defjvp(_kl_per_example_jvp, symbolic_zeros=True)


@_frame.loss
def kl_divergence_with_logits(
  student_logits,
  teacher_logits,
  *,
  temperature=1.0,
  axis: int = -1,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""KL divergence ``KL(teacher || student)`` between the softmaxes of two sets of logits.

  .. math::
    \ell_n = \sum_c p^t_{n,c} \left(\log p^t_{n,c} - \log p^s_{n,c}\right),
    \quad p^s = \mathrm{softmax}(z^s / T),\; p^t = \mathrm{softmax}(z^t / T)

  No ``T^2`` factor (see :func:`distillation_loss`). Gradients:
  ``d l / d z^s = (p^s - p^t) / T`` and ``d l / d z^t = p^t (log p^t - log p^s - l) / T``;
  wrap the teacher in ``jax.lax.stop_gradient`` to freeze it. ``0 log 0 = 0``: a class
  the teacher gives no mass (a ``-inf`` teacher logit) adds 0 to the value and both
  gradients whatever the student says there; a class the student gives no mass and the
  teacher some makes the divergence ``+inf``. Unweighted ``"mean"`` over ``[N, C]``
  logits is torch's ``F.kl_div(log_softmax(s / T), log_softmax(t / T), log_target=True,
  reduction="batchmean")``.

  Args:
    student_logits: ``[..., C, ...]`` the distribution being fitted, class axis at
      ``axis``; the per-example shape is its shape without ``axis``.
    teacher_logits: the target distribution's logits, same shape.
    temperature: ``T``, finite and > 0, dividing both sets of logits; may be traced, and
      its gradient is exact.
    $options

  $contract

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> s, t = jnp.array([[0.0, 1.0]]), jnp.array([[1.0, 0.0]])
    >>> round(float(xentax.kl_divergence_with_logits(s, t)), 4)
    0.4621

  References:
    Kullback and Leibler, 1951; ``torch.nn.functional.kl_div`` with ``log_target=True``.
  """
  pair = _prepare_pair(
    "kl_divergence_with_logits",
    student_logits,
    teacher_logits,
    axis=axis,
    where=where,
    temperature=temperature,
    sample_weight=sample_weight,
    reduction=reduction,
  )
  return pair.reduce(kl_per_example(pair.s, pair.t, pair.inv, pair.keep), reduction)


def _safe_jsd(s, t, beta) -> jax.Array:
  """The guarded generalised JSD: the fallback for rows with ``-inf`` or underflow."""
  log_q, log_p = _log_softmax(s), _log_softmax(t)  # student, teacher
  log_m = _safe_log_mixture(log_p, log_q, beta)
  p, q = jnp.exp(log_p), jnp.exp(log_q)
  kl_pm, kl_qm = _weighted_log_ratio(p, log_p, log_m), _weighted_log_ratio(q, log_q, log_m)
  # A side with weight 0 adds 0, even where its KL is infinite (0 * inf = 0).
  return _common.safe_mul(beta, kl_pm) + _common.safe_mul(1 - beta, kl_qm)


def _safe_log_mixture(log_p, log_q, beta) -> jax.Array:
  """``log(beta P + (1 - beta) Q)`` from log-probabilities, ``-inf`` where both are 0."""
  # A weight of 0 is log 0 = -inf (that side leaves the mixture), behind a double where.
  log_beta = jnp.where(beta > 0, jnp.log(jnp.where(beta > 0, beta, 1.0)), -jnp.inf)
  log_1mb = jnp.where(beta < 1, jnp.log(jnp.where(beta < 1, 1 - beta, 1.0)), -jnp.inf)
  a, b = log_beta + log_p, log_1mb + log_q
  hi = jax.lax.stop_gradient(jnp.maximum(a, b))
  hi = jnp.where(jnp.isfinite(hi), hi, 0.0)
  total = jnp.exp(a - hi) + jnp.exp(b - hi)
  # Double where: log's gradient at a class with no mass (1 / 0) would meet a zero as NaN.
  has_mass = ~(total <= 0)  # NaN stays NaN
  return jnp.where(has_mass, hi + jnp.log(jnp.where(has_mass, total, 1.0)), -jnp.inf)


def _jsd_value(s, t, beta, keep):
  """``(JSD, log Q, log P)`` per row: one guard-free fused pass, else the guarded form."""
  pieces = _rows.row_pieces(s.shape[-1])
  sp, tp = _rows.split_rows(s, pieces), _rows.split_rows(t, pieces)
  log_q = sp - _lse_and_exp(sp, pieces)[0]
  log_p = tp - _lse_and_exp(tp, pieces)[0]
  q, p = jnp.exp(log_q), jnp.exp(log_p)
  log_m = jnp.log(beta * p + (1 - beta) * q)
  # A class with no mass on one side (0 * -inf) or both (M = 0) gives NaN: guarded form.
  terms = beta * p * (log_p - log_m) + (1 - beta) * q * (log_q - log_m)
  jsd = _rows.row_reduce(terms, pieces)
  safe = lambda s, t: _safe_jsd(s, t, beta)  # noqa: E731
  return _with_fallback(jsd, keep, safe, s, t), log_q.reshape(s.shape), log_p.reshape(t.shape)


@jax.custom_jvp
def _jsd_per_example(s, t, beta, keep) -> jax.Array:
  """``beta KL(P || M) + (1 - beta) KL(Q || M)``, ``M = beta P + (1 - beta) Q``.

  Tangent, with ``A = KL(Q || M)`` and ``B = KL(P || M)``: ``d/ds = (1 - beta) Q (log Q -
  log M - A)``, ``d/dt = beta P (log P - log M - B)``, ``d/d beta = B - A``.
  """
  return _jsd_value(s, t, beta, keep)[0]


def _jsd_per_example_jvp(primals, tangents):
  s, t, beta, keep = primals
  ds, dt, d_beta, _ = tangents
  jsd, log_q, log_p = _jsd_value(s, t, beta, keep)
  log_m = _safe_log_mixture(log_p, log_q, beta)
  kl_qm, g_s = _kl_and_grad(jnp.exp(log_q), log_q, log_m, keep)
  kl_pm, g_t = _kl_and_grad(jnp.exp(log_p), log_p, log_m, keep)
  tangent = jnp.zeros_like(jsd)
  # Symbolic zeros are skipped: an untouched beta must not turn an infinite KL into NaN.
  for coef, g, dx in ((1 - beta, g_s, ds), (beta, g_t, dt)):
    if not isinstance(dx, _SymbolicZero):
      # A side with weight 0 moves nothing, even where its KL (so g) is not finite.
      g = jnp.where(jnp.expand_dims(coef == 0, -1), 0.0, g)
      tangent = tangent + coef * jnp.sum(g * dx, axis=-1)
  if not isinstance(d_beta, _SymbolicZero):
    tangent = tangent + (kl_pm - kl_qm) * d_beta
  return jsd, tangent


_jsd_per_example.defjvp(_jsd_per_example_jvp, symbolic_zeros=True)


@_frame.loss
def jensen_shannon_divergence_with_logits(
  student_logits,
  teacher_logits,
  *,
  beta=0.5,
  temperature=1.0,
  axis: int = -1,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Generalised Jensen-Shannon divergence between student and teacher softmaxes.

  Liger-Kernel's convention (``LigerJSD``), with ``P`` the teacher and ``Q`` the student:

  .. math::
    \mathrm{JSD}_\beta(P \| Q) = \beta\, \mathrm{KL}(P \| M) + (1 - \beta)\, \mathrm{KL}(Q \| M),
    \quad M = \beta P + (1 - \beta) Q,

  with ``P = softmax(z^t / T)``, ``Q = softmax(z^s / T)``. ``beta = 0.5`` is the symmetric
  Jensen-Shannon divergence (at most ``log 2``). As in Liger, a *Python* ``beta`` of exactly
  0 or 1 selects the forward ``KL(P || Q)`` or the reverse ``KL(Q || P)`` instead (the
  formula itself is 0 there; Liger special-cases both ends the same way). A traced ``beta``
  always uses the formula.

  Gradients: ``d l / d z^s = (1 - beta) Q (log Q - log M - KL(Q || M)) / T``,
  ``d l / d z^t = beta P (log P - log M - KL(P || M)) / T`` (wrap the teacher in
  ``jax.lax.stop_gradient`` to freeze it) and ``d l / d beta = KL(P || M) - KL(Q || M)``.
  ``0 log 0 = 0`` as in :func:`kl_divergence_with_logits`.

  Args:
    student_logits: ``[..., C, ...]`` student logits (Liger's ``input``), class axis at
      ``axis``; the per-example shape is its shape without ``axis``.
    teacher_logits: teacher logits (Liger's ``target``), same shape.
    beta: the mixing weight in ``[0, 1]`` (a traced scalar is allowed).
    temperature: ``T``, finite and > 0, dividing both sets of logits.
    $options

  $contract

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> s, t = jnp.array([[0.0, -jnp.inf]]), jnp.array([[-jnp.inf, 0.0]])
    >>> round(float(xentax.jensen_shannon_divergence_with_logits(s, t)), 6)  # log 2
    0.693147

  References:
    Lin, "Divergence measures based on the Shannon entropy", 1991; Agarwal et al.,
    "On-Policy Distillation of Language Models" (GKD), 2024; Liger-Kernel's ``LigerJSD``.
  """
  fn_name = "jensen_shannon_divergence_with_logits"
  _reduce.check_reduction(fn_name, reduction)  # before beta's check, as for every loss
  pair = _prepare_pair(
    fn_name,
    student_logits,
    teacher_logits,
    axis=axis,
    where=where,
    temperature=temperature,
    sample_weight=sample_weight,
    reduction=reduction,
    bad=_validate.options(fn_name, beta=beta),
  )
  s, t, inv, keep = pair.s, pair.t, pair.inv, pair.keep
  if isinstance(beta, int | float) and beta == 0:
    losses = kl_per_example(s, t, inv, keep)  # forward KL(P || Q), Liger's beta = 0
  elif isinstance(beta, int | float) and beta == 1:
    losses = kl_per_example(t, s, inv, keep)  # reverse KL(Q || P), Liger's beta = 1
  else:
    # Dropped rows zeroed before the scaling: their zero cotangent times a NaN or infinite
    # logit would make the temperature's gradient NaN.
    s, t = _zero_dropped(s, keep), _zero_dropped(t, keep)
    losses = _jsd_per_example(s * inv, t * inv, jnp.asarray(beta, s.dtype), keep)
  return pair.reduce(losses, reduction)


@_frame.loss
def distillation_loss(
  student_logits,
  teacher_logits,
  labels,
  *,
  temperature=1.0,
  alpha=0.5,
  axis: int = -1,
  ignore_index: int | None = None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
  teacher_gradient: bool = False,
) -> jax.Array:
  r"""Knowledge distillation (Hinton et al.): softened KL to the teacher plus hard-label CE.

  .. math::
    \ell_n = \alpha\, T^2\, \mathrm{KL}\!\left(\mathrm{softmax}(z^t_n / T) \,\|\,
      \mathrm{softmax}(z^s_n / T)\right)
      + (1 - \alpha) \left(\mathrm{lse}(z^s_n) - z^s_{n, y_n}\right)

  The ``T^2`` keeps the soft term's gradient on the scale of the hard term's as ``T`` grows
  (the soft gradient is ``(p^s - p^t) / T``). The hard term is the sparse cross-entropy at
  temperature 1. An example dropped by ``where`` or ``ignore_index`` leaves both terms and
  ``sample_weight`` scales the mixed loss, so the unweighted ``"mean"`` is
  ``alpha T^2 mean(KL) + (1 - alpha) mean(CE)`` over the kept examples.

  Gradient: ``d l / d z^s = alpha T (p^s_T - p^t_T) + (1 - alpha) (softmax(z^s) - onehot(y))``;
  with ``teacher_gradient=True`` the teacher receives ``alpha T p^t_T (log p^t_T - log p^s_T -
  KL)``. The divergence is ``KL(teacher || student)``: swapping the two changes the loss.

  Args:
    student_logits: ``[..., C, ...]`` student logits, class axis at ``axis``.
    teacher_logits: teacher logits, same shape.
    labels: integer class indices for the hard term, the per-example shape:
      ``student_logits.shape`` without ``axis``.
    temperature: ``T``, finite and > 0, for the soft term.
    alpha: weight of the soft term in ``[0, 1]``; ``1 - alpha`` weights the hard term.
    $options

  $contract

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> s, t = jnp.array([[0.0, 1.0]]), jnp.array([[1.0, 0.0]])
    >>> round(float(xentax.distillation_loss(s, t, jnp.array([1]), alpha=1.0)), 4)
    0.4621

  References:
    Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015.
  """
  fn_name = "distillation_loss"
  _reduce.check_reduction(fn_name, reduction)
  _validate.flag(fn_name, "teacher_gradient", teacher_gradient)
  labels, shown = _validate.integer_labels(fn_name, labels, ignore_index)
  _validate.float_array(fn_name, "student_logits", student_logits)
  option_bad = _validate.options(fn_name, temperature=temperature, alpha=alpha)
  num_classes = jnp.shape(student_logits)[
    _validate.normalize_axis(fn_name, axis, jnp.ndim(student_logits))
  ]
  # Validated here first so a bad label is reported under this function's name.
  prepared = prepare_labels(
    fn_name,
    labels,
    num_classes=num_classes,
    class_weights=None,
    ignore_index=ignore_index,
    where=where,
    dtype=_common.compute_dtype(student_logits),
    shown=shown,
    option_bad=option_bad,
  )
  hard = sparse_categorical_cross_entropy_with_logits(
    student_logits, labels, axis=axis, ignore_index=ignore_index, where=where, reduction="none"
  )
  pair = _prepare_pair(
    fn_name,
    student_logits,
    teacher_logits,
    axis=axis,
    where=prepared.valid,
    temperature=temperature,
    sample_weight=sample_weight,
    reduction=reduction,
    bad=prepared.bad,
  )
  temperature, alpha = jnp.asarray(temperature, pair.s.dtype), jnp.asarray(alpha, pair.s.dtype)
  teacher = pair.t if teacher_gradient else jax.lax.stop_gradient(pair.t)
  soft = kl_per_example(pair.s, teacher, pair.inv, pair.keep)
  # A term with weight 0 adds 0, even where it is infinite (0 * inf = 0).
  losses = _common.safe_mul(alpha * jnp.square(temperature), soft)
  return pair.reduce(losses + _common.safe_mul(1 - alpha, hard), reduction)
