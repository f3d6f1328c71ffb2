"""The entry frame every public loss goes through: its docstring, and foreign keywords.

A loss is decorated with :func:`loss`: its docstring's shared paragraphs are filled
(:mod:`._doc`), and a keyword the loss does not take is answered, before anything runs, with
xentax's name for it (torch's ``weight``, Keras's ``from_logits``) or the closest parameter.
Signatures stay explicit: the check reads the wrapped function's own signature.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable

from xentax.losses import _doc

# A keyword of torch or Keras that xentax names otherwise, and what to pass instead.
FOREIGN_KEYWORDS = {
  "weight": "pass class_weights= (one weight per class: torch's weight)",
  "from_logits": (
    "choose the function instead: a ..._with_logits loss takes logits, the others take "
    "probabilities (Keras's from_logits)"
  ),
  "size_average": 'pass reduction= ("mean", "sum" or "none"; torch\'s size_average)',
  "reduce": 'pass reduction= ("mean", "sum" or "none"; torch\'s reduce)',
  "input": "pass it first, positionally (torch's input)",
  "target": "pass it second, positionally (torch's target)",
  "y_true": "pass it second, positionally (Keras's y_true; xentax takes predictions first)",
  "y_pred": "pass it first, positionally (Keras's y_pred)",
}
# Binary losses: torch's elementwise weight is xentax's ``weights``.
_BINARY_WEIGHT = "pass weights= (elementwise, never in a denominator: torch's weight)"


def unknown_keywords(fn_name: str, params, unknown) -> TypeError:
  """A ``TypeError`` naming xentax's spelling of each keyword in ``unknown``."""
  hints = []
  for name in unknown:
    hint = FOREIGN_KEYWORDS.get(name)
    if name == "weight" and "weights" in params:
      hint = _BINARY_WEIGHT
    close = difflib.get_close_matches(name, params, n=1)
    if hint is not None:
      hints.append(f"{name!r} ({hint})")
    elif close:
      hints.append(f"{name!r} (did you mean {close[0]}?)")
    else:
      hints.append(f"{name!r} (not an option of this loss)")
  return TypeError(f"{fn_name}: unexpected keyword argument " + ", ".join(hints))


def loss(fn: Callable | None = None, **aliases: str) -> Callable:
  """Decorator for a public loss: fill its docstring (``aliases`` as :func:`._doc.shared`)
  and answer a keyword it does not take with xentax's name for it."""
  if fn is None:
    return lambda fn: loss(fn, **aliases)
  fn = _doc.shared(fn, **aliases)
  params = tuple(inspect.signature(fn).parameters)

  @functools.wraps(fn)
  def entry(*args, **kwargs):
    if kwargs.keys() - params:
      raise unknown_keywords(fn.__name__, params, [k for k in kwargs if k not in params])
    return fn(*args, **kwargs)

  return entry
