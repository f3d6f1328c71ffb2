"""Docstring paragraphs shared by the losses, written once.

A loss's docstring names a shared paragraph on a line of its own, ``$where`` say, indented
as the paragraph should be; :func:`shared` replaces the line with the paragraph (continued
lines indented two spaces more). Each docstring defines its per-example shape in the
argument that carries it (the labels', or the logits' without the class axis).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable

PARAGRAPHS = {
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
  "reduction_weighted": (
    'reduction: ``"none"`` (``s_n l_n``, 0 where dropped), ``"sum"``, ``"mean"`` '
    "(``sum s_n l_n / sum s_n w_{y_n}`` over the kept examples, torch's weighted mean; 0 "
    'with zero gradient when nothing is kept) or ``"sum_over_batch_size"`` '
    "(``sum s_n l_n`` / the number of kept examples, Keras's default)."
  ),
}

_WIDTH = 92
_PLACEHOLDER = re.compile(r"^(?P<indent>\s*)\$(?P<name>\w+)\s*$")


def fill(doc: str) -> str:
  """``doc`` with each ``$name`` line replaced by :data:`PARAGRAPHS`'s paragraph."""
  out = []
  for line in doc.split("\n"):
    match = _PLACEHOLDER.match(line)
    if match is None:
      out.append(line)
    else:
      indent = match["indent"]
      text = PARAGRAPHS[match["name"]]
      out.extend(
        textwrap.wrap(
          text,
          _WIDTH,
          initial_indent=indent,
          subsequent_indent=indent + "  ",
          break_long_words=False,
          break_on_hyphens=False,
        )
      )
  return "\n".join(out)


def shared(fn: Callable) -> Callable:
  """Decorator: fill ``fn``'s docstring's shared paragraphs (:func:`fill`)."""
  fn.__doc__ = fill(fn.__doc__)
  return fn
