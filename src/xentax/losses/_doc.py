"""Docstring paragraphs shared by the losses, written once.

A line ``$name`` in a docstring becomes the paragraph ``PARAGRAPHS[name]`` at that line's
indent (an item's continued lines two spaces deeper; ``{input}``, the first parameter).
``$options`` becomes the paragraphs of every parameter of the signature that has one and
that the docstring does not describe itself (``@shared(reduction="reduction_weighted")``
picks another paragraph for a parameter); ``$contract``, a loss's ``Returns:`` and
``Raises:`` sections. Each docstring defines its per-example shape in
the argument that carries it (the labels', or the logits' without the class axis).
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable

# A paragraph, or a tuple of items (each wrapped on its own).
PARAGRAPHS: dict[str, str | tuple[str, ...]] = {
  "axis": "axis: the class axis of ``{input}``.",
  "class_weights": "class_weights: ``[C]`` per-class weights ``w`` (torch's ``weight``).",
  "ignore_index": (
    "ignore_index: label value whose examples are dropped (torch's ``ignore_index``; its "
    "default -100 is ``None`` here, which keeps every example)."
  ),
  "label_smoothing": (
    "label_smoothing: ``epsilon`` in [0, 1]: the target becomes "
    "``(1 - epsilon) y + epsilon / C`` (torch's convention)."
  ),
  "binary_weights": (
    "weights: elementwise weights ``w`` (torch's ``weight``), broadcastable to the input's "
    "shape; they multiply the loss and, unlike ``sample_weight``, never enter a denominator."
  ),
  "binary_label_smoothing": (
    "label_smoothing: ``epsilon`` in [0, 1]; labels become ``y (1 - epsilon) + epsilon / 2`` "
    "(Keras's binary convention, not the categorical ``epsilon / C``)."
  ),
  "z_loss": (
    "z_loss: ``lambda_z >= 0``; adds ``lambda_z lse(z)^2`` per example (PaLM's z-loss), "
    "not multiplied by any class weight."
  ),
  "softcap": (
    "softcap: ``c``, finite and > 0, or None: the logits become ``z = c tanh(logits / c)`` "
    "before anything else (Gemma 2). The gradient with respect to the raw logits is that "
    "with respect to ``z`` times ``1 - (z / c)^2``; ``c`` may be traced and its gradient is "
    "exact."
  ),
  "implementation": (
    'implementation: ``"auto"``, ``"xla"`` or ``"pallas"``. ``"pallas"`` runs the Pallas '
    "(Triton) kernels: compiled on an NVIDIA GPU, Pallas's interpreter elsewhere (slow; for "
    'tests). ``"auto"`` takes the kernel where a committed GPU record measured it faster '
    "(``KERNELS`` in ``xentax.losses._engine``), XLA elsewhere. The value and every "
    "gradient agree within float32 rounding except at the degenerate points the loss guide "
    "lists; the kernels have reverse-mode derivatives only "
    '(forward mode needs ``"xla"``).'
  ),
  "teacher_gradient": (
    "teacher_gradient: False (the default) treats the teacher as a constant, as "
    "``jax.lax.stop_gradient`` would: its inputs get zero gradient and none is computed. "
    "True lets the soft term's gradient reach the teacher (a teacher trained jointly)."
  ),
  "where": (
    "where: boolean mask broadcastable to the per-example shape; False examples are "
    'dropped: 0 for ``"none"``, left out of every sum and denominator, zero gradient '
    "whatever their inputs hold."
  ),
  "sample_weight": (
    "sample_weight: per-example weights ``s_n``, finite and >= 0 (Keras's name), "
    "broadcastable to the per-example shape; each loss is multiplied by its weight, and a "
    "zero weight drops its example even where its loss is infinite (a weight that is, or "
    "whose product with the loss is, subnormal counts as zero on backends that flush "
    "subnormals, XLA:CPU among them)."
  ),
  "reduction": (
    'reduction: ``"none"`` (``s_n l_n``, 0 where dropped), ``"sum"``, ``"mean"`` '
    "(``sum s_n l_n / sum s_n`` over the kept examples, their count when unweighted; 0 "
    'with zero gradient when nothing is kept) or ``"sum_over_batch_size"`` '
    "(``sum s_n l_n`` / the number of kept examples, Keras's default)."
  ),
  "returns": (
    "The loss, float32 (float64 for float64 ``{input}``): a scalar, or the per-example "
    'shape for ``"none"``.'
  ),
  "raises": (
    "TypeError: an input of the wrong kind: a non-float ``{input}``, labels or targets of "
    "the wrong dtype, a non-boolean ``where``, an option that is not a real number.",
    "ValueError: shapes that do not fit (or an ``axis`` out of range), an unknown "
    "``reduction``, or a concrete value outside its domain (a label, target, probability, "
    "option or weight), named with its position. Under ``jit`` such a value cannot raise: "
    "it makes the affected examples' loss and gradient NaN (every kept example's for an "
    "option), and :func:`xentax.checked` reports it.",
  ),
  "contrastive_chunk_size": (
    "chunk_size: rows of the ``[B, B]`` similarity matrix held at a time, forward and "
    "backward (the backward pass recomputes each block); None: blocks of at most 2^22 "
    "similarities. The result does not depend on it."
  ),
  "contrastive_axis_name": (
    "axis_name: inside ``jax.shard_map``, the mesh axis (or axes) the batch is sharded over: "
    "every device's rows are scored against the columns of all devices (all-gathered, with "
    "exact gradients) and the reduction is global, so each device returns the loss of the "
    "global batch. None outside ``shard_map`` (under ``jit`` on sharded inputs the call "
    "already sees the global batch)."
  ),
  "contrastive_where": (
    "where: boolean ``[B]`` mask; a False pair leaves both its row and its column (a padded "
    "batch), with zero gradient whatever its embeddings hold."
  ),
  "reduction_weighted": (
    'reduction: ``"none"`` (``s_n l_n``, 0 where dropped), ``"sum"``, ``"mean"`` '
    "(``sum s_n l_n / sum s_n w_{y_n}`` over the kept examples, torch's weighted mean; 0 "
    'with zero gradient when nothing is kept) or ``"sum_over_batch_size"`` '
    "(``sum s_n l_n`` / the number of kept examples, Keras's default)."
  ),
}

_WIDTH = 92
_PLACEHOLDER = re.compile(r"^(?P<indent>\s*)\$(?P<name>\w+)\s*$")


def _wrap(text: str, indent: str) -> list[str]:
  """``text`` wrapped at ``indent``; an item (``name: ...``) continues two spaces deeper."""
  hanging = "  " if re.match(r"\w+: ", text) else ""
  return textwrap.wrap(
    text,
    _WIDTH,
    initial_indent=indent,
    subsequent_indent=indent + hanging,
    break_long_words=False,
    break_on_hyphens=False,
  )


def fill(doc: str, params=(), aliases=None, paragraphs=None) -> str:
  """``doc`` with each ``$name`` line replaced by its paragraph (module docstring).

  ``params`` are the signature's parameter names, first the main input; ``aliases`` maps a
  parameter to the paragraph that describes it; ``paragraphs`` replaces :data:`PARAGRAPHS`
  (another package's shared paragraphs).
  """
  aliases = aliases or {}
  paragraphs = PARAGRAPHS if paragraphs is None else paragraphs
  described = set(re.findall(r"^\s+(\w+): ", doc, re.MULTILINE))
  out = []
  for line in doc.split("\n"):
    match = _PLACEHOLDER.match(line)
    if match is None:
      out.append(line)
      continue
    names = [match["name"]]
    if names == ["contract"]:
      out.extend(_contract(match["indent"], params[0]))
      continue
    if names == ["options"]:
      names = [aliases.get(p, p) for p in params if p not in described]
      names = [n for n in names if n in paragraphs]
    for name in names:
      texts = paragraphs[name]
      for text in (texts,) if isinstance(texts, str) else texts:
        text = text.replace("{input}", params[0] if params else "input")
        out.extend(_wrap(text, match["indent"]))
  return "\n".join(out)


def _contract(indent: str, name: str) -> list[str]:
  """A loss's ``Returns:`` and ``Raises:`` sections (``$contract``)."""
  lines = [
    f"{indent}Returns:",
    *_wrap(str(PARAGRAPHS["returns"]), indent + "  "),
    "",
    f"{indent}Raises:",
  ]
  for text in PARAGRAPHS["raises"]:
    lines.extend(_wrap(text, indent + "  "))
  return [line.replace("{input}", name) for line in lines]


def shared(fn: Callable | None = None, *, paragraphs=None, **aliases: str) -> Callable:
  """Decorator: fill ``fn``'s docstring's shared paragraphs (:func:`fill`)."""
  if fn is None:
    return lambda fn: shared(fn, paragraphs=paragraphs, **aliases)
  params = tuple(inspect.signature(fn).parameters)
  fn.__doc__ = fill(fn.__doc__ or "", params, aliases, paragraphs)
  return fn
