"""Fused linear + cross-entropy without the logits: the public function and its entry.

The two schedules live in :mod:`._fused_vocab` (vocabulary blocks) and :mod:`._fused_tokens`
(token chunks); sharded inputs in :mod:`._fused_layout` (Explicit meshes) and
:mod:`._fused_auto` (Auto meshes).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from xentax.losses import (
  _common,
  _engine,
  _frame,
  _fused_auto,
  _fused_layout,
  _fused_tokens,
  _fused_vocab,
  _pallas_fused,
  _pallas_fused_grad,
  _pallas_sparse,
  _reduce,
  _sparse,
  _validate,
)
from xentax.losses._fused_vocab import auto_block_size
from xentax.losses._sparse_terms import SparseOptions, prepare_labels


@_frame.loss(reduction="reduction_weighted")
def fused_linear_cross_entropy(
  hidden,
  weight,
  labels,
  *,
  bias=None,
  block_size: int | None = None,
  ignore_index: int | None = None,
  class_weights=None,
  label_smoothing=0.0,
  z_loss=0.0,
  softcap: float | None = None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
  return_lse: bool = False,
  schedule: str = "auto",
  chunk_size: int | None = None,
  implementation: str = "auto",
  filter_eps: float | None = None,
):
  r"""Sparse cross-entropy of ``hidden @ weight + bias`` without materialising the logits.

  Equals ``sparse_categorical_cross_entropy_with_logits(hidden @ weight + bias, labels,
  ...)`` with the same options, in value and gradients, while holding only a slice of the
  ``[N, V]`` logits at a time. The classes are the ``V`` columns of ``weight`` (``C = V``).

  .. math::
    z = \mathrm{softcap}(h W + b), \quad
    \ell_n = (1 - \epsilon)\, w_{y_n} (\mathrm{lse}(z_n) - z_{n,y_n})
      + \frac{\epsilon}{V} \sum_c w_c (\mathrm{lse}(z_n) - z_{n,c})
      + \lambda_z \mathrm{lse}(z_n)^2

  Gradient: with ``p_n = softmax(z_n)`` and ``G_n = d l_n / d z_n = (1 - e) w_{y_n} (p_n -
  onehot(y_n)) + (e / V) (sum(w) p_n - w) + 2 lambda_z lse(z_n) p_n``, each row times its
  reduction factor, ``d hidden = G W^T``, ``d weight = h^T G`` and ``d bias = sum_n G_n``;
  a softcap multiplies ``G`` by ``1 - (z / c)^2`` first. Every option's gradient is exact.

  Schedules (``schedule``), the same loss and gradients in two orders:

  * ``"tokens"``: chunks of ``chunk_size`` tokens with their full ``[chunk_size, V]``
    logits; the gradients are formed in the forward pass, three matmuls as for full
    logits (Liger-Kernel's scheme). Scalar reductions only; a cotangent on ``lse`` costs
    one more pass, and a 16-bit weight adds a float32 ``[D, V]`` ``d weight`` accumulator.
  * ``"vocab"``: blocks of ``block_size`` columns with an online log-sum-exp; the backward
    pass recomputes each block's logits, four matmuls (Cut Cross-Entropy's scheme). Every
    reduction, and a sharded vocabulary
    (:func:`xentax.parallel.vocab_parallel_fused_linear_cross_entropy`).
  * ``"auto"`` (default): ``"tokens"`` on the CPU backend, where one matmul fewer wins;
    ``"vocab"`` on accelerators, where the extra matmul is cheap and the ``[chunk_size,
    V]`` buffers are not; also ``"vocab"`` for ``reduction="none"``, for a ``block_size``
    given without a ``chunk_size``, inside ``shard_map``, and for a 16-bit weight whose
    float32 accumulator (``4 D V`` bytes) exceeds 256 MiB.

  ``implementation="pallas"`` runs Pallas kernels instead (unsharded inputs only): the
  logits exist only as blocks on chip (except to differentiate the softcap, or the class
  weights under smoothing), the backward pass adds ``G W^T`` and ``h^T G`` block by block
  with atomic adds (Cut Cross-Entropy's scheme), float32 accumulation.

  Peak memory grows linearly with ``chunk_size`` (``"tokens"``) or ``block_size``
  (``"vocab"``), on top of O(N D); a larger slice means fewer, wider matmuls, faster only
  until it outgrows the cache. The defaults hold no more than full logits do.

  Sharded inputs: on a mesh with Explicit axes, tokens sharded (``hidden`` ``P(<tokens>,
  None)``) and ``weight`` sharded over the vocabulary (``P(None, <vocab>)``) run each
  device's share under ``jit``, ``"vocab"`` schedule (``block_size`` counts a shard's
  columns); collectives are all-reduces of ``[N]`` statistics, ``d hidden``, ``d weight``
  and ``d bias``, never a gather. Inside a user's ``shard_map`` the loss is that of the
  device's tokens, and a replicated input's gradient is summed over the devices.

  Args:
    hidden: ``[..., D]`` activations, any float dtype.
    weight: ``[D, V]`` output projection (flax ``Dense`` kernel layout; pass
      ``embedding.T`` for a tied head).
    labels: ``[...]`` integer targets in ``[0, V)``, the per-example shape:
      ``hidden.shape`` without its last axis.
    bias: optional ``[V]``.
    block_size: vocabulary columns per block of ``"vocab"``, in ``[1, V]``; None picks at
      most 2^24 logits and 8192 columns, a multiple of 128.
    $options
    return_lse: also return the per-token ``lse(z)``, of the labels' shape (0 for dropped
      tokens), so a z-loss can be logged without a second pass.
    schedule: ``"auto"``, ``"tokens"`` or ``"vocab"`` (see above).
    chunk_size: tokens per chunk of ``"tokens"``, a positive integer; None keeps a chunk at
      2^24 logits and 512 rows at most (a multiple of 8 rows).
    filter_eps: with ``implementation="pallas"``, Cut Cross-Entropy's gradient filtering:
      a block of ``G = d loss / d z`` whose entries all lie below ``filter_eps`` in
      magnitude adds nothing to ``d hidden`` and ``d weight``. Each entry of ``d hidden``
      then errs by at most ``filter_eps`` times the row's ``sum_c |W_{d,c}|``, each of
      ``d weight`` by ``filter_eps`` times ``sum_n |h_{n,d}|``, each of ``d bias`` by
      ``filter_eps N``; None (the default) filters nothing.

  Returns:
    The loss, float32 (float64 for float64 ``hidden``): a scalar, or ``labels.shape`` for
    ``"none"``; ``(loss, lse)`` with ``return_lse=True``.

  Raises:
    $raises
    ValueError: also a ``block_size`` outside ``[1, V]``, a ``chunk_size`` below 1, an
      unknown ``schedule``, or ``schedule="tokens"`` with ``reduction="none"``.
    TypeError: also a non-integer ``block_size`` or ``chunk_size``, or forward-mode
      differentiation (``jax.jvp``), which a ``custom_vjp`` does not support.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> h = jax.random.normal(jax.random.key(0), (8, 16))
    >>> w = jax.random.normal(jax.random.key(1), (16, 1000)) / 4
    >>> y = jnp.arange(8)
    >>> fused = xentax.fused_linear_cross_entropy(h, w, y, block_size=256)
    >>> dense = xentax.sparse_categorical_cross_entropy_with_logits(h @ w, y)
    >>> bool(jnp.allclose(fused, dense, rtol=1e-5))
    True

  References:
    Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models", 2024;
    Liger-Kernel's ``FusedLinearCrossEntropy``.
  """
  name = "fused_linear_cross_entropy"
  options = {
    "bias": bias,
    "class_weights": class_weights,
    "label_smoothing": label_smoothing,
    "z_loss": z_loss,
    "softcap": softcap,
    "where": where,
    "sample_weight": sample_weight,
  }
  layout = _fused_layout.explicit_layout(name, hidden, weight)
  partitioned = layout is None and _fused_auto.auto_mesh(hidden, weight)
  tuning = {"schedule": schedule, "block_size": block_size, "chunk_size": chunk_size}
  floats = [a for a in (weight, bias) if a is not None]
  if _choose_kernel(name, implementation, hidden, floats, filter_eps, layout, partitioned, tuning):
    return _kernel_loss(
      name,
      hidden,
      weight,
      labels,
      ignore_index=ignore_index,
      reduction=reduction,
      return_lse=return_lse,
      filter_eps=filter_eps,
      **options,
    )
  core = functools.partial(
    fused_linear_cross_entropy_impl,
    name,
    ignore_index=ignore_index,
    reduction=reduction,
    return_lse=return_lse,
    schedule=schedule,
    block_size=block_size,
    chunk_size=chunk_size,
  )
  if layout is None:
    return core(hidden, weight, labels, partitioned=partitioned, **options)
  _reduce.check_reduction(name, reduction)
  hidden, weight, labels, _ = _check_head(name, hidden, weight, labels, ignore_index)
  _check_rest(name, hidden, weight, None, labels, None, None)  # the global shapes
  per_token = reduction == "none"
  return _fused_layout.run(
    name, layout, core, hidden, weight, labels, options, per_token=per_token, return_lse=return_lse
  )


def fused_linear_cross_entropy_impl(
  fn_name,
  hidden,
  weight,
  labels,
  *,
  bias,
  block_size,
  ignore_index,
  class_weights,
  label_smoothing,
  z_loss,
  softcap,
  where,
  reduction,
  return_lse,
  sample_weight=None,
  axis_name=None,
  batch_axis_name=None,
  schedule="vocab",
  chunk_size=None,
  partitioned=False,
):
  """:func:`fused_linear_cross_entropy`, optionally inside ``shard_map`` with ``weight``
  sharded along the vocabulary over ``axis_name`` and tokens over ``batch_axis_name``, or
  ``partitioned`` on an Auto mesh (:mod:`._fused_auto`; the ``"vocab"`` schedule)."""
  _reduce.check_reduction(fn_name, reduction)
  hidden, weight, labels, shown = _check_head(fn_name, hidden, weight, labels, ignore_index)
  if chunk_size is not None:
    chunk_size = _validate.positive_int(fn_name, "chunk_size", chunk_size)
  schedule = _fused_tokens.choose_schedule(
    fn_name,
    schedule,
    reduction=reduction,
    weight=weight,
    sharded=axis_name is not None or batch_axis_name is not None,
    block_size=block_size,
    chunk_size=chunk_size,
    partitioned=partitioned,
  )
  bias, num_classes = _check_rest(fn_name, hidden, weight, bias, labels, axis_name, batch_axis_name)
  vocab_size = weight.shape[1]
  auto_block = block_size is None
  if block_size is None:
    block_size = auto_block_size(int(jnp.size(labels)), vocab_size)
  block_size = _validate.block_size(fn_name, block_size, vocab_size)
  dtype, prepared, weights = _prepare(
    fn_name,
    hidden,
    weight,
    labels,
    shown,
    num_classes,
    class_weights=class_weights,
    ignore_index=ignore_index,
    where=where,
    options=dict(label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap),
    sample_weight=sample_weight,
  )
  h = hidden.reshape(-1, hidden.shape[-1])
  options = (label_smoothing, z_loss, softcap)
  if schedule == "tokens":
    # The token chunks sanitize their own rows: no [N, D] copy of the hidden states.
    flat = None if weights is None else weights.reshape(-1)
    loss, lse = _tokens_schedule(h, weight, bias, prepared, options, flat, reduction, chunk_size)
  else:
    config = _fused_vocab.Config(
      block_size=block_size,
      num_blocks=-(-vocab_size // block_size),
      vocab_size=vocab_size,
      options=SparseOptions.of(num_classes, label_smoothing=label_smoothing, z_loss=z_loss),
      softcap=softcap is not None,
      axis_name=axis_name,
      batch_axis_name=batch_axis_name,
      auto_block=auto_block,
    )
    core = _fused_vocab.vocab_loss_partitioned if partitioned else _fused_vocab.vocab_loss
    h = hidden if partitioned else h
    loss, lse = _vocab_schedule(
      core, config, h, weight, bias, prepared, options, weights, reduction
    )
  if return_lse:
    lse = jnp.where(prepared.valid, lse.reshape(labels.shape), jnp.zeros((), lse.dtype))
    return loss, lse
  return loss


def _choose_kernel(
  fn_name, implementation, hidden, arrays, filter_eps, layout, partitioned, tuning
):
  """Whether the Pallas kernels run; a ValueError for what they do not take."""
  chosen = _engine.implementation(fn_name, implementation, hidden, *arrays)
  if filter_eps is not None and (chosen != "pallas" or not filter_eps >= 0):
    raise ValueError(
      f"{fn_name}: filter_eps={filter_eps!r} must be None, or a float >= 0 with "
      "implementation='pallas' (the kernel's gradient filtering)."
    )
  if chosen != "pallas":
    return False
  if layout is not None or partitioned or tuning != dict.fromkeys(tuning) | {"schedule": "auto"}:
    raise ValueError(
      f"{fn_name}: implementation='pallas' runs on unsharded inputs and has no schedule, "
      "block_size or chunk_size (the kernel's blocks are its own); on a mesh, or to choose "
      "a schedule, pass implementation='xla'."
    )
  return True


def _kernel_loss(
  fn_name,
  hidden,
  weight,
  labels,
  *,
  bias,
  ignore_index,
  class_weights,
  label_smoothing,
  z_loss,
  softcap,
  where,
  sample_weight,
  reduction,
  return_lse,
  filter_eps,
):
  """The loss by the Pallas kernels (:mod:`._pallas_fused_grad`), tokens flattened to ``[N, D]``."""
  _reduce.check_reduction(fn_name, reduction)
  hidden, weight, labels, shown = _check_head(fn_name, hidden, weight, labels, ignore_index)
  bias, num_classes = _check_rest(fn_name, hidden, weight, bias, labels, None, None)
  dtype, prepared, sample = _prepare(
    fn_name,
    hidden,
    weight,
    labels,
    shown,
    num_classes,
    class_weights=class_weights,
    ignore_index=ignore_index,
    where=where,
    options=dict(label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap),
    sample_weight=sample_weight,
  )
  config = SparseOptions.of(num_classes, label_smoothing=label_smoothing, z_loss=z_loss)
  cap = None if softcap is None else jnp.asarray(softcap, dtype)
  weights = prepared.class_weights
  options = _pallas_sparse.Options(config.smoothing, weights is not None, cap is not None)
  tiling = {**_pallas_fused.DEFAULT_CONFIG}
  if filter_eps is not None:
    tiling["filter_eps"] = float(filter_eps)
  tiling = tuple(sorted(tiling.items()))
  flat = lambda v: None if v is None else v.reshape(-1)  # noqa: E731
  aux = (flat(prepared.labels), flat(prepared.valid), flat(prepared.bad))
  kernel_weights = weights if options.smoothing else None
  stats = _pallas_fused_grad.row_stats(
    _pallas_fused_grad.Spec(options, tiling),
    hidden.reshape(-1, hidden.shape[-1]),
    weight,
    bias,
    aux[0],
    kernel_weights,
    cap,
    _common.nan_where(aux[2], jnp.float32),
  )
  eps, z = (jnp.asarray(v, dtype) for v in (label_smoothing, z_loss))
  rest = (weights, eps, z, flat(sample))
  loss = _sparse.kernel_total(config, reduction, *stats, kernel_weights, aux, rest)
  loss = (loss.reshape(labels.shape) if reduction == "none" else loss).astype(dtype)
  if return_lse:
    lse = jnp.where(prepared.valid, stats[0].reshape(labels.shape), 0.0).astype(dtype)
    return loss, lse
  return loss


def _prepare(
  fn_name, hidden, weight, labels, shown, num_classes, *, options, sample_weight, **label_options
):
  """``(compute dtype, prepared labels, sample weights)``; a traced option outside its
  domain (``options``: smoothing, z-loss, softcap) makes every kept token bad."""
  option_bad = _validate.options(fn_name, **options)
  dtype = _common.compute_dtype(jnp.result_type(hidden, weight))
  prepared = prepare_labels(
    fn_name,
    labels,
    num_classes=num_classes,
    dtype=dtype,
    shown=shown,
    option_bad=option_bad,
    **label_options,
  )
  return dtype, prepared, _validate.sample_weights(fn_name, sample_weight, labels.shape, dtype)


def _check_head(fn_name, hidden, weight, labels, ignore_index):
  """``hidden [..., D]``, ``weight [D, V]`` and the labels (checked, and as shown)."""
  hidden = _validate.float_array(fn_name, "hidden", hidden)
  weight = _validate.float_array(fn_name, "weight", weight)
  labels, shown = _validate.integer_labels(fn_name, labels, ignore_index)
  if weight.ndim != 2 or hidden.ndim < 1 or hidden.shape[-1] != weight.shape[0]:
    raise ValueError(
      f"{fn_name}: hidden has shape {hidden.shape} and weight {weight.shape}; they must be "
      "[..., D] and [D, V] (flax Dense kernel layout; pass embedding.T for a tied head)."
    )
  return (*_common.nonempty_features(hidden, weight), labels, shown)


def _check_rest(fn_name, hidden, weight, bias, labels, axis_name, batch_axis_name):
  """Checks the labels' shape, ``V``, the mesh axes and ``bias [V]``; ``(bias, total V)``."""
  if labels.shape != hidden.shape[:-1]:
    raise ValueError(
      f"{fn_name}: labels have shape {labels.shape} but hidden {hidden.shape} needs labels "
      f"of shape {hidden.shape[:-1]}."
    )
  vocab_size = weight.shape[1]
  _validate.check_num_classes(fn_name, vocab_size, "weight's vocabulary axis (V)")
  shards = 1 if axis_name is None else _validate.axis_size(fn_name, "axis_name", axis_name)
  if batch_axis_name is not None:
    _validate.axis_size(fn_name, "batch_axis_name", batch_axis_name)
  if bias is not None:
    bias = _validate.float_array(fn_name, "bias", bias)
    if bias.shape != (vocab_size,):
      raise ValueError(f"{fn_name}: bias has shape {bias.shape}; it must be ({vocab_size},).")
  return bias, vocab_size * shards


def _tokens_schedule(h, weight, bias, prepared, options, weights, reduction, chunk_size):
  """``(loss, lse)`` of the token-chunked schedule (:mod:`._fused_tokens`)."""
  target_weight = prepared.target_weight
  return _fused_tokens.tokens_loss(
    h,
    weight,
    bias,
    prepared.labels.reshape(-1),
    prepared.valid.reshape(-1),
    prepared.bad.reshape(-1),
    prepared.class_weights,
    None if target_weight is None else target_weight.reshape(-1),
    *options,
    weights,
    reduction=reduction,
    chunk_size=chunk_size,
  )


def _vocab_schedule(core, config, h, weight, bias, prepared, options, weights, reduction):
  """``(loss, lse)`` of the vocabulary-blocked schedule (``core``: :mod:`._fused_vocab`).

  ``h`` is ``[N, D]``, or ``[..., D]`` unflattened for a partitioned core (a flattening
  would gather a sharded sequence axis)."""
  tokens = h.shape[:-1]
  # Dropped rows become zeros (so inf/NaN there cannot leak); bad labels make their row NaN.
  h = jnp.where(prepared.valid.reshape(tokens)[..., None], h, jnp.zeros((), h.dtype))
  h = h + _common.nan_where(prepared.bad.reshape(tokens), h.dtype)[..., None]
  dtype = _common.compute_dtype(jnp.result_type(h, weight))
  label_smoothing, z_loss, softcap = options
  losses, lse = core(
    config,
    h,
    weight,
    bias,
    prepared.labels.reshape(tokens),
    prepared.class_weights,
    jnp.asarray(label_smoothing, dtype),
    jnp.asarray(z_loss, dtype),
    None if softcap is None else jnp.asarray(softcap, dtype),
  )
  loss = _reduce.reduce_losses(
    losses.reshape(prepared.valid.shape),
    valid=prepared.valid,
    denominator=prepared.target_weight,
    sample_weight=weights,
    reduction=reduction,
    axis_name=config.batch_axis_name,
  )
  return loss, lse
