"""The training loop: a jitted Optax ``train_step``, epochs of shuffled minibatches, evaluation.

Design notes:
  ``train_step(params, opt_state, batch) -> (params, opt_state, metrics)`` is the unit of
  work. The loop runs a whole epoch (or ``steps_per_call`` steps) as one compiled
  ``lax.scan`` over ``train_step``, so there is one dispatch per chunk, not per step, and
  the host never waits on the device inside an epoch: the progress bar advances as chunks
  are dispatched and reads no device value. Per-step losses come back stacked; the first
  non-finite one stops the run with :class:`TrainingDiverged`, naming the step.

  Every batch goes to the device through :func:`place_batch`. With ``devices=N > 1`` it
  gets ``NamedSharding(mesh, P(None, "data"))`` instead of a device (axis 0 is the step,
  axis 1 the example), the parameters and optimizer state are replicated over the mesh,
  and ``jit`` lets XLA partition the same step (see :mod:`xentax.training._data_parallel`);
  nothing else in the loop changes.

  Determinism: parameters come from ``jax.random.key(seed)`` and the shuffles from
  ``numpy.random.default_rng(seed)``; the same seed on the same machine gives bitwise
  identical parameters.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from xentax import data as xdata
from xentax.training import _data_parallel, _objectives, _records
from xentax.training._models import Model, build_model, num_parameters

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
# Learning rates used when a config leaves ``lr`` unset (tuned for Adam on the deck's sets).
DEFAULT_LR = {
  "logistic_regression": 1e-2,
  "softmax_regression": 1e-2,
  "mlp": 1e-3,
  "cnn": 2e-3,
  "next_word_mlp": 2e-3,
  "matrix_factorisation": 1e-2,
}


class TrainingDiverged(FloatingPointError):
  """The training loss became NaN or infinite; the message names the step."""

  def __init__(self, message: str, *, step: int, epoch: int):
    super().__init__(message)
    self.step = step
    self.epoch = epoch


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One training run, declaratively (what ``config.json`` records).

  Attributes:
    model: a name in :data:`xentax.training.MODELS`.
    dataset: a name in :data:`xentax.data.DATASETS`.
    loss: a name in :data:`xentax.training.LOSSES`.
    optimizer: ``"sgd"``, ``"momentum"`` (SGD with momentum 0.9), ``"adam"``, ``"adamw"``
      or ``"rmsprop"``.
    epochs: passes over the training set.
    batch_size: examples per step; an epoch has ``ceil(N / batch_size)`` steps, the last
      batch filled with the first examples of the epoch's order.
    lr: learning rate; None uses :data:`DEFAULT_LR` for the model.
    seed: drives initialisation, shuffling and the dataset split.
    shuffle: reshuffle the training set every epoch.
    device: ``"cpu"``, ``"gpu"`` or None (JAX's default device).
    devices: data parallelism over the first ``devices`` devices of that platform: each
      batch is split along its examples, parameters are replicated and XLA all-reduces
      the gradients. None or 1: one device. ``batch_size`` must be divisible by it.
    steps_per_call: steps per compiled call (None: a whole epoch).
    model_options, dataset_options, loss_options: keyword options for the builders.
  """

  model: str = "softmax_regression"
  dataset: str = "digits"
  loss: str = "cross_entropy"
  optimizer: str = "adam"
  epochs: int = 20
  batch_size: int = 32
  lr: float | None = None
  seed: int = 0
  shuffle: bool = True
  device: str | None = None
  devices: int | None = None
  steps_per_call: int | None = None
  model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
  dataset_options: dict[str, Any] = dataclasses.field(default_factory=dict)
  loss_options: dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict:
    """A JSON-ready dict (NumPy values become lists)."""
    return _records.jsonable(dataclasses.asdict(self))


@dataclasses.dataclass
class TrainResult:
  """What :func:`train` returns.

  Attributes:
    params: the trained parameters.
    history: one dict per epoch (the lines of ``metrics.jsonl``).
    summary: final metrics and timings (``summary.json``).
    model: the :class:`Model`.
  """

  params: Any
  history: list[dict]
  summary: dict
  model: Model


def make_optimizer(name: str, lr: float) -> optax.GradientTransformation:
  """An Optax optimizer by name.

  Raises:
    ValueError: unknown name or non-positive ``lr``.
  """
  if not lr > 0:
    raise ValueError(f"learning rate must be > 0; got {lr}")
  table = {
    "sgd": lambda: optax.sgd(lr),
    "momentum": lambda: optax.sgd(lr, momentum=0.9),
    "adam": lambda: optax.adam(lr),
    "adamw": lambda: optax.adamw(lr),
    "rmsprop": lambda: optax.rmsprop(lr),
  }
  if name not in table:
    raise ValueError(f"unknown optimizer {name!r}; choose from {list(table)}")
  return table[name]()


def resolve_device(name: str | None) -> jax.Device:
  """The first device of platform ``name`` (``"cpu"``/``"gpu"``), or JAX's default.

  Raises:
    ValueError: unknown name, or no such device on this machine.
  """
  if name is None:
    return jax.devices()[0]
  if name not in ("cpu", "gpu"):
    raise ValueError(f"device must be 'cpu' or 'gpu'; got {name!r}")
  try:
    return jax.devices(name)[0]
  except RuntimeError as err:
    raise ValueError(
      f"no {name} device found ({err}); install the CUDA wheels (pip install -e '.[cuda13]')"
      " or use --device cpu"
    ) from None


def place_batch(batch: Any, device: jax.Device | jax.sharding.Sharding) -> Any:
  """Put a (stacked) batch pytree on ``device``: the one place data meets the device.

  ``device`` may be any ``jax.sharding.Sharding``: data-parallel training passes
  ``NamedSharding(mesh, P(None, "data"))`` for ``[steps, batch, ...]`` arrays, so each
  device receives ``batch / N`` examples of every step.
  """
  return jax.device_put(batch, device)


def make_train_step(
  apply_fn: Callable, loss_fn: Callable, optimizer: optax.GradientTransformation
) -> Callable:
  """The jitted ``train_step(params, opt_state, batch) -> (params, opt_state, metrics)``.

  Args:
    apply_fn: ``apply(params, x) -> logits``.
    loss_fn: ``loss_fn(logits, labels) -> scalar`` (any xentax loss, see
      :func:`xentax.training.make_loss`).
    optimizer: any Optax gradient transformation.

  Returns:
    The jitted step; ``batch`` is ``{"x": [B, ...], "y": [B]}`` and ``metrics`` is
    ``{"loss", "accuracy"}`` on that batch, before the update.
  """

  def train_step(params, opt_state, batch):
    def objective(p):
      logits = apply_fn(p, batch["x"])
      return loss_fn(logits, batch["y"]), logits

    (loss, logits), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, {"loss": loss, "accuracy": _objectives.accuracy(logits, batch["y"])}

  return jax.jit(train_step)


def make_multi_step(train_step: Callable) -> Callable:
  """``run(params, opt_state, batches)``: ``train_step`` scanned over stacked batches."""

  def run(params, opt_state, batches):
    def body(carry, batch):
      params, opt_state, metrics = train_step(*carry, batch)
      return (params, opt_state), metrics

    (params, opt_state), metrics = jax.lax.scan(body, (params, opt_state), batches)
    return params, opt_state, metrics

  return jax.jit(run)


def epoch_order(num_examples: int, batch_size: int, rng: np.random.Generator | None):
  """Example indices for one epoch, ``[steps, batch_size]`` (shuffled if ``rng``)."""
  order = rng.permutation(num_examples) if rng is not None else np.arange(num_examples)
  steps = -(-num_examples // batch_size)
  fill = steps * batch_size - num_examples
  order = np.concatenate([order, order[:fill]])  # the last batch is filled, not dropped
  return order.reshape(steps, batch_size)


def train(
  config: TrainConfig,
  *,
  dataset: xdata.Dataset | None = None,
  params: Any = None,
  loss_fn: Callable | None = None,
  out_dir: str | Path | None = None,
  progress: bool = True,
  max_steps: int | None = None,
) -> TrainResult:
  """Train ``config.model`` on ``config.dataset``; optionally write the run's files.

  Args:
    config: the run.
    dataset: use this dataset instead of loading ``config.dataset``.
    params: initial parameters instead of ``model.init(key)``.
    loss_fn: a custom ``loss_fn(logits, labels)`` instead of ``config.loss``.
    out_dir: if given, write ``config.json``, ``metrics.jsonl`` (one line per epoch, as
      it happens), ``summary.json`` and ``curves.png`` there.
    progress: show a ``rich`` progress bar.
    max_steps: stop after this many steps in total (smoke tests).

  Returns:
    A :class:`TrainResult`.

  Raises:
    TrainingDiverged: the training loss became NaN or infinite (the message names the
      step); ``summary.json`` records it too.
    ValueError: bad configuration (unknown names, non-positive sizes, missing device, more
      ``devices`` than exist, a batch size not divisible by ``devices``).
  """
  if config.epochs < 1 or config.batch_size < 1:
    raise ValueError(
      f"epochs and batch_size must be >= 1; got {config.epochs} and {config.batch_size}"
    )
  device = resolve_device(config.device)
  num_devices = 1 if config.devices is None else config.devices
  if num_devices > 1:
    mesh = _data_parallel.data_mesh(num_devices, device.platform)
    state_placement = _data_parallel.replicated(mesh)
    batch_placement = _data_parallel.batch_sharding(mesh, stacked=True)
  elif num_devices == 1:
    state_placement = batch_placement = device
  else:
    raise ValueError(f"devices must be >= 1 (or None); got {config.devices}")
  if dataset is None:
    dataset = xdata.load(config.dataset, seed=config.seed, **config.dataset_options)
  n = len(dataset.y_train)
  batch_size = min(config.batch_size, n)
  if batch_size % num_devices:
    clipped = "" if batch_size == config.batch_size else f" (the {n} training examples)"
    raise ValueError(
      f"batch_size {batch_size}{clipped} is not divisible by devices={num_devices}: each"
      f" device takes batch_size / devices examples of every step. Use a batch size that is"
      f" a multiple of {num_devices}."
    )
  model = build_model(config.model, dataset, **config.model_options)
  if loss_fn is None:
    loss_fn = _objectives.make_loss(
      config.loss,
      labels=dataset.y_train,
      num_classes=dataset.num_classes,
      **config.loss_options,
    )
  if config.lr is None:
    config = dataclasses.replace(config, lr=DEFAULT_LR.get(config.model, 1e-2))
  optimizer = make_optimizer(config.optimizer, config.lr)
  if params is None:
    params = model.init(jax.random.key(config.seed))
  params = jax.device_put(params, state_placement)
  opt_state = jax.device_put(optimizer.init(params), state_placement)
  run_chunk = make_multi_step(make_train_step(model.apply, loss_fn, optimizer))

  writer = _records.RunWriter(out_dir, config.to_json()) if out_dir is not None else None
  rng = np.random.default_rng(config.seed) if config.shuffle else None
  steps_per_epoch = -(-n // batch_size)
  chunk = config.steps_per_call or steps_per_epoch
  total_steps = config.epochs * steps_per_epoch
  if max_steps is not None:
    total_steps = min(total_steps, max_steps)
  history: list[dict] = []
  step = 0
  start = time.perf_counter()
  compile_seconds = None
  with _records.progress_bar(total_steps, enabled=progress) as bar:
    for epoch in range(1, config.epochs + 1):
      if step >= total_steps:
        break
      epoch_start = time.perf_counter()
      order = epoch_order(n, batch_size, rng)[: total_steps - step]
      step_losses, step_accuracies = [], []
      for first in range(0, len(order), chunk):
        idx = order[first : first + chunk]
        batches = place_batch(
          {"x": dataset.x_train[idx], "y": dataset.y_train[idx]}, batch_placement
        )
        params, opt_state, metrics = run_chunk(params, opt_state, batches)
        step_losses.append(metrics["loss"])
        step_accuracies.append(metrics["accuracy"])
        bar.advance(len(idx))  # no device read: dispatch is asynchronous
      losses = np.concatenate([np.asarray(x) for x in step_losses])  # one sync per epoch
      if compile_seconds is None:
        compile_seconds = time.perf_counter() - epoch_start
      bad = np.flatnonzero(~np.isfinite(losses))
      if bad.size:
        bad_step = step + int(bad[0]) + 1
        message = (
          f"training stopped: the loss became {losses[bad[0]]} at step {bad_step} (epoch"
          f" {epoch}, batch {int(bad[0]) + 1} of {steps_per_epoch}); the last finite loss"
          f" was {_last_finite(history, losses[: bad[0]])}. Lower the learning rate"
          f" (now {config.lr}) or check the inputs."
        )
        if writer is not None:
          writer.finish({"status": "diverged", "error": message, "step": bad_step})
        raise TrainingDiverged(message, step=bad_step, epoch=epoch)
      step += len(losses)
      epoch_seconds = time.perf_counter() - epoch_start
      test = _objectives.evaluate(
        model.apply, params, dataset.x_test, dataset.y_test, num_classes=dataset.num_classes
      )
      record = {
        "epoch": epoch,
        "step": step,
        "train_loss": float(losses.mean()),
        "train_accuracy": float(np.concatenate([np.asarray(a) for a in step_accuracies]).mean()),
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
        "test_recall": test["recall"],
        "epoch_seconds": epoch_seconds,
      }
      history.append(record)
      bar.update_text(f"epoch {epoch} test acc {test['accuracy']:.3f}")
      if writer is not None:
        writer.log(record)
  final = history[-1]
  timed = [r["epoch_seconds"] for r in history[1:]] or [history[0]["epoch_seconds"]]
  summary = {
    "status": "ok",
    "model": model.name,
    "dataset": dataset.name,
    "num_parameters": num_parameters(params),
    "num_train": n,
    "num_test": len(dataset.y_test),
    "steps": step,
    "final_train_loss": final["train_loss"],
    "final_test_loss": final["test_loss"],
    "final_test_accuracy": final["test_accuracy"],
    "final_test_recall": final["test_recall"],
    "seconds_total": time.perf_counter() - start,
    "seconds_first_epoch_with_compile": compile_seconds,
    "seconds_per_epoch_median": float(np.median(timed)),
    "device": f"{device.platform} {device.device_kind}",
    "devices": num_devices,
  }
  if writer is not None:
    writer.finish(summary, history=history, title=f"{model.name} on {dataset.name}")
  return TrainResult(params=params, history=history, summary=summary, model=model)


def _last_finite(history, losses) -> str:
  finite = losses[np.isfinite(losses)]
  if finite.size:
    return f"{finite[-1]:.4g}"
  return f"{history[-1]['train_loss']:.4g} (mean of the previous epoch)" if history else "none"


def add_train_arguments(parser) -> None:
  """The options of ``xentax train`` (kept here so the command line stays thin)."""
  from xentax.data import DATASETS
  from xentax.training._models import MODELS
  from xentax.training._objectives import LOSSES

  parser.add_argument("--model", required=True, choices=MODELS)
  parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
  parser.add_argument("--loss", default="cross_entropy", choices=LOSSES)
  parser.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--lr", type=float, default=None, help="default: per model (DEFAULT_LR)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=None, help="default: runs/<model>_<dataset>")
  parser.add_argument(
    "--device", choices=("cpu", "gpu"), default=None, help="default: whatever JAX finds"
  )
  parser.add_argument(
    "--devices",
    type=int,
    default=None,
    metavar="N",
    help="data-parallel over N devices (batch split N ways; on CPU: N virtual devices)",
  )
