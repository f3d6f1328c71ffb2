"""Every figure of xentax, drawn on ``matplotlib.figure.Figure`` objects.

Design notes:
  No ``pyplot`` and no ``matplotlib.use``: a :class:`~matplotlib.figure.Figure` created
  directly owns its canvas, so drawing needs no global state, no backend switch and no
  display, and importing xentax changes nothing in the caller's matplotlib. Each function
  takes plain numbers (lists, dicts) and returns the figure; :func:`save` writes it as a
  PNG atomically. Conventions: the y-axis names the quantity actually plotted, titles name
  the run, baselines are horizontal lines, epochs are integer ticks.

  This module imports nothing from xentax but :mod:`xentax.records`: it sits on the bottom
  floor, so experiments, benchmarks and the report all draw with it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from xentax import records


def save(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
  """Write ``fig`` to ``path`` as a PNG, atomically."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=dpi)
  return records.write_bytes(path, buffer.getvalue())


def _legend(ax) -> None:
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8, framealpha=0.9)


def training_curves(
  runs: Mapping[str, Sequence[Mapping]],
  *,
  title: str,
  objective: str = "cross_entropy",
  baselines: Mapping[str, float] | None = None,
) -> Figure:
  """Loss and accuracy against epoch for one or more runs (a history: one dict per epoch).

  The left panel plots the training objective (dashed: the mean over the epoch's batches
  of ``objective``, e.g. focal loss) and the test cross-entropy (solid: unweighted,
  whatever the objective), so the y-axis says which is which. ``baselines`` (name ->
  test loss, e.g. the unigram model) are drawn as horizontal lines.
  """
  fig = Figure(figsize=(10, 3.9))
  ax_loss, ax_acc = fig.subplots(1, 2)
  single = len(runs) == 1
  for i, (name, history) in enumerate(runs.items()):
    epochs = [r["epoch"] for r in history]
    color = f"C{i}"
    prefix = "" if single else f"{name}: "
    ax_loss.plot(
      epochs, [r["train_loss"] for r in history], "--", color=color, label=f"{prefix}train"
    )
    ax_loss.plot(epochs, [r["test_loss"] for r in history], "-", color=color, label=f"{prefix}test")
    ax_acc.plot(
      epochs, [r["train_accuracy"] for r in history], "--", color=color, label=f"{prefix}train"
    )
    ax_acc.plot(
      epochs, [r["test_accuracy"] for r in history], "-", color=color, label=f"{prefix}test"
    )
  for j, (name, value) in enumerate((baselines or {}).items()):
    ax_loss.axhline(value, color="gray", lw=1.0, ls=(0, (1, 1 + j)), label=f"{name} {value:.3g}")
  ax_loss.set_ylabel(f"train: {objective} (dashed)\ntest: cross-entropy (solid)")
  ax_loss.set_yscale("log")
  ax_acc.set_ylabel("accuracy")
  for ax in (ax_loss, ax_acc):
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    _legend(ax)
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def loss_comparison(losses: Mapping[str, Sequence[float]], *, title: str) -> Figure:
  """Two runs' training loss against step (``"full"`` and ``"fused"``) and their difference."""
  fig = Figure(figsize=(10, 3.9))
  ax_loss, ax_diff = fig.subplots(1, 2)
  steps = np.arange(1, len(losses["full"]) + 1)
  ax_loss.plot(steps, losses["full"], "-", color="C0", lw=2.5, alpha=0.6, label="full logits")
  ax_loss.plot(steps, losses["fused"], "--", color="C1", label="fused")
  ax_loss.set_ylabel("training cross-entropy (batch mean)")
  diff = np.abs(np.asarray(losses["fused"]) - np.asarray(losses["full"]))
  ax_diff.plot(steps, diff, "o-", color="C2", ms=3)
  ax_diff.set_ylabel("|fused - full| training cross-entropy")
  ax_diff.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
  for ax in (ax_loss, ax_diff):
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
  _legend(ax_loss)
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def per_class_recall(
  recalls: Mapping[str, Sequence[Sequence[float]]], *, class_names: Sequence[str], title: str
) -> Figure:
  """Test recall of each class per objective: mean over seeds (bar) and each seed (dots).

  Args:
    recalls: objective -> ``[seeds][classes]`` recalls.
    class_names: one label per class.
    title: names the experiment.
  """
  fig = Figure(figsize=(7.5, 4))
  ax = fig.subplots()
  names = list(recalls)
  width = 0.8 / len(class_names)
  for c, class_name in enumerate(class_names):
    for i, name in enumerate(names):
      values = np.asarray(recalls[name], np.float64)[:, c]
      x = i + (c - (len(class_names) - 1) / 2) * width
      ax.bar(x, values.mean(), width * 0.9, color=f"C{c}", label=class_name if i == 0 else None)
      ax.errorbar(x, values.mean(), yerr=values.std(), color="black", capsize=3, lw=1)
      ax.plot(np.full(values.shape, x), values, ".", color="black", ms=3, alpha=0.6)
  ax.set_xticks(range(len(names)), names)
  ax.set_ylabel("test recall (mean and std over seeds)")
  ax.set_ylim(0, 1.05)
  ax.grid(alpha=0.3, axis="y")
  _legend(ax)
  ax.set_title(title)
  fig.tight_layout()
  return fig


def time_and_memory_vs_classes(
  series: Mapping[str, tuple[Sequence[int], Sequence[float], Sequence[float]]], *, title: str
) -> Figure:
  """Median time (ms) and temporaries (MB) against the number of classes, per implementation.

  Args:
    series: implementation -> ``(classes, milliseconds, megabytes)``.
    title: names the loss, batch and dtype.
  """
  fig = Figure(figsize=(10, 4))
  ax_time, ax_mem = fig.subplots(1, 2)
  for name, (classes, ms, mb) in series.items():
    ax_time.plot(classes, ms, "o-", label=name)
    ax_mem.plot(classes, [max(m, 1e-6) for m in mb], "o-", label=name)
  for ax in (ax_time, ax_mem):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("number of classes")
    ax.grid(alpha=0.3)
  ax_time.set_ylabel("value-and-grad median time (ms)")
  ax_mem.set_ylabel("value-and-grad temporaries (MB)")
  _legend(ax_time)
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def memory_vs_vocabulary(
  series: Mapping[str, tuple[Sequence[int], Sequence[float]]], *, target_mb: float, title: str
) -> Figure:
  """Temporaries (MB) against vocabulary size, per implementation, with the target as a line."""
  fig = Figure(figsize=(6.5, 4))
  ax = fig.subplots()
  for name, (vocabs, mb) in series.items():
    ax.plot(vocabs, mb, "o-" if name.startswith("full") else "s--", label=name)
  ax.axhline(target_mb, color="gray", lw=1.0, ls=":", label=f"target {target_mb:g} MB")
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xlabel("vocabulary size V")
  ax.set_ylabel("value-and-grad temporaries (MB)")
  ax.grid(alpha=0.3)
  _legend(ax)
  ax.set_title(title)
  fig.tight_layout()
  return fig


def step_size_errors(
  steps: Sequence[float],
  errors: Mapping[str, Mapping[str, Sequence[float]]],
  *,
  chosen_step: float,
  title: str,
) -> Figure:
  """Finite-difference error against step ``h``, central and forward, per dtype."""
  fig = Figure(figsize=(6.5, 4.2))
  ax = fig.subplots()
  colors = {"float32": "tab:orange", "float64": "tab:blue"}
  for name, curves in errors.items():
    color = colors.get(name)
    ax.loglog(steps, curves["central"], "-o", ms=3, color=color, label=f"{name} central")
    ax.loglog(steps, curves["forward"], "--", color=color, alpha=0.6, label=f"{name} forward")
    u = float(np.finfo(name).eps) / 2
    ax.axvline(u ** (1 / 3), color=color, lw=0.8, ls=":")
  ax.axvline(chosen_step, color="black", lw=1.0, ls="-.", label=f"xentax step {chosen_step:g}")
  ax.set_xlabel("finite-difference step h")
  ax.set_ylabel("max |finite difference - closed form|")
  ax.set_title(title)
  ax.set_ylim(1e-13, 10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="lower left")
  fig.tight_layout()
  return fig


def loss_vs_probability(
  p: Sequence[float], losses: Mapping[str, Sequence[float]], *, point: tuple[float, float, str]
) -> Figure:
  """Binary cross-entropy against the predicted probability, one curve per true label."""
  fig = Figure(figsize=(6, 4))
  ax = fig.subplots()
  for (label, loss), style in zip(losses.items(), ["-", "--", ":"], strict=False):
    ax.plot(p, loss, style, label=label)
  x, y, text = point
  ax.plot([x], [y], "o", color="black")
  ax.annotate(text, (x, y), (0.35, 2.5), arrowprops={"arrowstyle": "->"})
  ax.set_xlabel("predicted probability p of the positive class")
  ax.set_ylabel("binary cross-entropy")
  ax.set_ylim(0, 7)
  ax.set_title("Binary cross-entropy: steep near the wrong end, zero at the true label")
  ax.grid(alpha=0.3)
  _legend(ax)
  fig.tight_layout()
  return fig


def accuracy_over_seeds(accuracies: Mapping[str, Sequence[float]], *, title: str) -> Figure:
  """Test accuracy per model: mean over seeds (bar, std as error bar) and each seed (dots).

  Args:
    accuracies: model -> one test accuracy per seed.
    title: names the experiment.
  """
  fig = Figure(figsize=(7, 4))
  ax = fig.subplots()
  names = list(accuracies)
  for i, name in enumerate(names):
    values = np.asarray(accuracies[name], np.float64)
    ax.bar(i, values.mean(), 0.6, color=f"C{i}")
    ax.errorbar(i, values.mean(), yerr=values.std(), color="black", capsize=3, lw=1)
    ax.plot(np.full(values.shape, i), values, ".", color="black", ms=4, alpha=0.7)
  low = min(float(np.min(v)) for v in accuracies.values())
  ax.set_ylim(max(0.0, low - 0.05), 1.0)
  ax.set_xticks(range(len(names)), names)
  ax.set_ylabel("test accuracy (mean, std and each seed)")
  ax.grid(alpha=0.3, axis="y")
  ax.set_title(title)
  fig.tight_layout()
  return fig


def reliability_panels(
  panels: Mapping[str, Mapping[str, Sequence[float] | float]], *, columns: int, title: str
) -> Figure:
  """Reliability diagrams side by side: per-bin accuracy against confidence, ECE in each title.

  Args:
    panels: panel title -> ``{"count", "accuracy", "confidence", "lower", "upper": per-bin
      lists, "ece": float}`` (the fields of :class:`xentax.metrics.CalibrationBins`).
    columns: panels per row.
    title: the figure's title.
  """
  rows = -(-len(panels) // columns)
  fig = Figure(figsize=(3.2 * columns, 3.0 * rows), layout="constrained")
  axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
  for ax, (name, p) in zip(axes, panels.items(), strict=False):
    count, acc, conf = (np.asarray(p[k], np.float64) for k in ("count", "accuracy", "confidence"))
    lower, upper = np.asarray(p["lower"], np.float64), np.asarray(p["upper"], np.float64)
    keep = count > 0
    width = np.maximum(upper - lower, 1.0 / (4 * len(count)))[keep]
    ax.plot([0, 1], [0, 1], "--", color="0.5", lw=1)
    ax.bar(lower[keep], acc[keep], width=width, align="edge", edgecolor="black", color="C0")
    ax.bar(
      lower[keep], conf[keep] - acc[keep], bottom=acc[keep], width=width, align="edge",
      color="C3", alpha=0.3,
    )  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"{name}\nECE = {float(p['ece']):.4f}", fontsize=9)  # type: ignore[arg-type]  # the record holds one float here
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
  for ax in axes[len(panels) :]:
    ax.set_visible(False)
  fig.suptitle(title, fontsize=10)
  return fig


def step_time_frontier(
  panels: Mapping[str, Mapping[str, tuple[float, float]]],
  *,
  floors: Mapping[str, float],
  title: str,
) -> Figure:
  """One panel per setting: each method's (step time in ms, test cross-entropy) as a point;
  the setting's floor (the known teacher's cross-entropy) as a horizontal line."""
  fig = Figure(figsize=(5.5 * len(panels), 4.2))
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  for ax, (name, points) in zip(axes, panels.items(), strict=True):
    for label, (ms, loss) in points.items():
      ax.scatter([ms], [loss], s=36, label=label)
    if name in floors:
      ax.axhline(floors[name], color="0.4", linestyle="--", linewidth=1, label="teacher")
    ax.set_xscale("log")
    ax.set_xlabel("median step time (ms, log scale)")
    ax.set_ylabel("test cross-entropy (nats)")
    ax.set_title(name)
    _legend(ax)
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def ranking_by_method(
  curves: Mapping[str, Mapping[str, Sequence[float]]],
  popularity: Mapping[str, float],
  *,
  reference_popularity: float,
  title: str,
) -> Figure:
  """Training loss and a ranking metric against steps for each method, and the mean training
  popularity of each method's top recommendations against the held-out items'.

  Args:
    curves: method -> ``{"steps": [n], "train_loss": [n], "metric": [n]}`` (seed means at
      ``n`` checkpoints).
    popularity: method -> mean training count of its top-ranked items.
    reference_popularity: the held-out items' mean training count (a horizontal line).
    title: names the experiment.
  """
  fig = Figure(figsize=(15, 4.2))
  ax_loss, ax_metric, ax_pop = fig.subplots(1, 3)
  for i, (name, curve) in enumerate(curves.items()):
    ax_loss.plot(curve["steps"], curve["train_loss"], "o-", color=f"C{i}", ms=3, label=name)
    ax_metric.plot(curve["steps"], curve["metric"], "o-", color=f"C{i}", ms=3, label=name)
  ax_loss.set_ylabel("training objective (each method's own, mean of the last steps)")
  ax_loss.set_yscale("log")
  ax_metric.set_ylabel("test recall@10 (seen items excluded)")
  for ax in (ax_loss, ax_metric):
    ax.set_xlabel("training steps")
    ax.grid(alpha=0.3)
  _legend(ax_metric)
  names = list(popularity)
  ax_pop.barh(
    range(len(names)), [popularity[n] for n in names], color=[f"C{i}" for i in range(len(names))]
  )
  ax_pop.axvline(reference_popularity, color="0.3", ls="--", lw=1, label="held-out items")
  ax_pop.set_yticks(range(len(names)), names, fontsize=7)
  ax_pop.set_xlabel("mean training count of the top 10")
  ax_pop.grid(alpha=0.3, axis="x")
  _legend(ax_pop)
  fig.suptitle(title)
  fig.tight_layout()
  return fig
