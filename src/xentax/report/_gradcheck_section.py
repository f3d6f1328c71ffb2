"""Report section: the gradient-check matrix, and finite-difference error against step size.

Design notes:
  The matrix is summarised per dtype and reference, then per loss (the full table, one row
  per option set, is what ``xentax gradcheck`` prints). The figure shows why the
  finite-difference tolerances are what they are: the error of a difference quotient falls
  with the step ``h`` (truncation, ``h^2`` for central differences) until round-off
  (``u |f| / h``) takes over, a V whose bottom sits near ``u^(1/3)``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xentax import gradcheck, losses  # noqa: E402
from xentax.gradcheck import _matrix  # noqa: E402
from xentax.gradcheck._tolerances import DTYPES, FD_STEP  # noqa: E402

STEPS = np.logspace(-13, 0, 40)


def step_size_errors(steps=STEPS) -> dict[str, dict[str, np.ndarray]]:
  """Max error of central and forward differences of the sparse CE gradient, by dtype.

  The loss is ``sparse_categorical_cross_entropy_with_logits`` (label smoothing 0.1) at the
  matrix's ``[6, 5]`` inputs; the reference is its closed form in float64 at the same
  (rounded) logits. Differences are taken in the named dtype, so ``x + h`` is rounded to
  it: that rounding is the round-off side of the V.
  """
  scores, labels, options = _matrix.make_inputs(
    "sparse_categorical_cross_entropy_with_logits", ("label_smoothing",)
  )
  out = {}
  with jax.enable_x64(True):
    for name in ("float32", "float64"):
      z = jnp.asarray(scores, name)
      exact = np.asarray(
        gradcheck.logits_grad(
          "sparse_categorical_cross_entropy_with_logits",
          z.astype(jnp.float64),
          labels,
          **options,
        )
      )
      n = z.size
      h = jnp.asarray(steps, name)[:, None, None]  # [S, 1, 1]
      basis = jnp.eye(n, dtype=name).reshape(n, *z.shape)  # [n, 6, 5]
      plus = (z + h[:, :, None, None] * basis).reshape(-1, *z.shape)
      minus = (z - h[:, :, None, None] * basis).reshape(-1, *z.shape)

      def f(x):
        return losses.sparse_categorical_cross_entropy_with_logits(x, labels, **options)

      f_plus = np.asarray(jax.vmap(f)(plus), np.float64).reshape(len(steps), n)
      f_minus = np.asarray(jax.vmap(f)(minus), np.float64).reshape(len(steps), n)
      f_0 = float(f(z))
      with np.errstate(divide="ignore", invalid="ignore"):
        central = (f_plus - f_minus) / np.asarray(2 * steps)[:, None]
        forward = (f_plus - f_0) / np.asarray(steps)[:, None]
      exact_flat = exact.reshape(1, n)
      out[name] = {
        "central": np.max(np.abs(central - exact_flat), axis=1),
        "forward": np.max(np.abs(forward - exact_flat), axis=1),
      }
  return out


def plot_step_size(errors, path: Path, steps=STEPS) -> None:
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  colors = {"float32": "tab:orange", "float64": "tab:blue"}
  for name, curves in errors.items():
    ax.loglog(steps, curves["central"], "-o", ms=3, color=colors[name], label=f"{name} central")
    ax.loglog(
      steps, curves["forward"], "--", color=colors[name], alpha=0.6, label=f"{name} forward"
    )
    u = float(np.finfo(name).eps) / 2
    ax.axvline(u ** (1 / 3), color=colors[name], lw=0.8, ls=":")
  ax.axvline(FD_STEP, color="black", lw=1.0, ls="-.", label=f"xentax step {FD_STEP:g}")
  ax.set_xlabel("finite-difference step h")
  ax.set_ylabel("max |finite difference - closed form|")
  ax.set_title("Truncation (right) against round-off (left); dotted: $u^{1/3}$")
  ax.set_ylim(1e-13, 10)
  ax.legend(fontsize=7, loc="lower left")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def section(out_dir: Path, quick: bool = False, losses: list[str] | None = None) -> str:
  """The gradient-verification section; ``quick`` checks float64 only."""
  dtypes = ("float64",) if quick else DTYPES
  records = gradcheck.run_matrix(dtypes, losses=losses)
  errors = step_size_errors()
  plot_step_size(errors, out_dir / "gradcheck_step_size.png")
  failed = sum(not r["passed"] for r in records)
  lines = [
    "## Gradient verification",
    "",
    f"`jax.grad` of every loss, for each of its options and reductions, against the closed "
    f"form of `xentax.gradcheck.logits_grad` and against float64 central differences, in "
    f"{', '.join(dtypes)}: **{len(records) - failed} of {len(records)} checks pass**. "
    "A check passes when every entry satisfies `|actual - expected| <= atol + rtol |expected|`;"
    " the references are computed in float64 at the same (rounded) inputs. The deck's models"
    " (softmax regression `X^T (softmax(XW + b) - Y) / n`, logistic regression) are checked the"
    " same way. `xentax gradcheck` prints the full table, one row per option set.",
    "",
    "| dtype | reference | passed | max abs. error | max rel. error | worst case | rtol |",
    "|---|---|---|---|---|---|---|",
  ]
  tol = {(r["dtype"], r["reference"]): r["rtol"] for r in records}
  for row in _matrix.summarize(records):
    lines.append(
      f"| {row['dtype']} | {row['reference']} | {row['passed']}/{row['checks']} "
      f"| {row['max_abs_error']:.1e} | {row['max_rel_error']:.1e} | `{row['worst_case']}` "
      f"| {tol[(row['dtype'], row['reference'])]:.0e} |"
    )
  lines += [
    "",
    "Per loss (all option sets and both references), checks passed and the largest relative error:",
    "",
    "| loss | " + " | ".join(dtypes) + " |",
    "|---|" + "---|" * len(dtypes),
  ]
  for loss in dict.fromkeys(r["loss"] for r in records):
    cells = []
    for dtype in dtypes:
      group = [r for r in records if r["loss"] == loss and r["dtype"] == dtype]
      if not group:
        cells.append("-")
        continue
      passed = sum(r["passed"] for r in group)
      worst = max(r["max_rel_error"] for r in group)
      cells.append(f"{passed}/{len(group)}, {worst:.1e}")
    lines.append(f"| `{loss}` | " + " | ".join(cells) + " |")
  best = {
    name: (STEPS[int(np.argmin(c["central"]))], float(np.min(c["central"])))
    for name, c in errors.items()
  }
  lines += [
    "",
    "The relative error is taken entry by entry, so its maximum comes from the smallest"
    " entries; those pass through `atol`. bfloat16 gradients carry one rounding to 8"
    " significant bits (unit roundoff 3.9e-3), float32 a few float32 ulps.",
    "",
    "![finite-difference error against step size](gradcheck_step_size.png)",
    "",
    "Error of finite differences of the sparse cross-entropy gradient against its closed form."
    f" Central differences are best near h = {best['float64'][0]:.0e} in float64 (error"
    f" {best['float64'][1]:.0e}) and near h = {best['float32'][0]:.0e} in float32 (error"
    f" {best['float32'][1]:.0e}, {best['float32'][1] / best['float64'][1]:.0e} times worse):"
    " left of the bottom round-off grows as 1/h, right of it truncation grows as h^2 (h for"
    " forward differences). So xentax takes differences in float64 only, and compares"
    f" float32 and bfloat16 gradients with those float64 references. Its step, h = {FD_STEP:g},"
    " sits left of the float64 bottom on purpose: truncation scales with the third"
    " derivative, which is large for the probability-input losses (1/p^3), while round-off"
    " is bounded by the known |f| and added to `atol`"
    " (`xentax.gradcheck.finite_difference_noise`).",
    "",
  ]
  return "\n".join(lines)
