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
from xentax.progress import progress_bar
from xentax.training import _data_parallel, _objectives
from xentax.training._config import TrainConfig, validate_config
from xentax.training._models import Model, build_model, num_parameters
from xentax.training._records import RunWriter


class TrainingDiverged(FloatingPointError):
  """The training loss became NaN or infinite; the message names the step."""

  def __init__(self, message: str, *, step: int, epoch: int):
    super().__init__(message)
    self.step = step
    self.epoch = epoch


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


@dataclasses.dataclass(frozen=True)
class _Placement:
  """Where state and batches go: one device, or a data-parallel mesh."""

  device: jax.Device
  num_devices: int
  state: Any  # a device or a replicated sharding
  batch: Any  # a device or a batch sharding of [steps, batch, ...] chunks


def _placement(config: TrainConfig) -> _Placement:
  """Step 1: the devices of the run (raises ValueError for a missing device or too few)."""
  device = resolve_device(config.device)
  num_devices = 1 if config.devices is None else config.devices
  if num_devices == 1:
    return _Placement(device, 1, device, device)
  mesh = _data_parallel.data_mesh(num_devices, device.platform)
  return _Placement(
    device,
    num_devices,
    _data_parallel.replicated(mesh),
    _data_parallel.batch_sharding(mesh, stacked=True),
  )


def _batch_size(config: TrainConfig, num_train: int, num_devices: int) -> int:
  """Step 2: the batch size (at most the training set), divisible by the devices."""
  batch_size = min(config.batch_size, num_train)
  if batch_size % num_devices:
    clipped = "" if batch_size == config.batch_size else f" (the {num_train} training examples)"
    raise ValueError(
      f"batch_size {batch_size}{clipped} is not divisible by devices={num_devices}: each"
      f" device takes batch_size / devices examples of every step. Use a batch size that is"
      f" a multiple of {num_devices}."
    )
  return batch_size


@dataclasses.dataclass
class _State:
  """What changes during a run: parameters, optimizer state, step count, history."""

  params: Any
  opt_state: Any
  step: int = 0
  history: list[dict] = dataclasses.field(default_factory=list)
  compile_seconds: float | None = None


def _run_epoch(
  epoch: int,
  state: _State,
  run_chunk: Callable,
  model: Model,
  dataset: xdata.Dataset,
  order: np.ndarray,
  *,
  chunk: int,
  placement: _Placement,
  bar,
  lr: float,
) -> dict:
  """Step 3: one epoch of compiled chunks, the divergence check, the test metrics.

  Returns the epoch's record (a line of ``metrics.jsonl``).

  Raises:
    TrainingDiverged: a step's loss is not finite (``state`` keeps the last good epoch).
  """
  epoch_start = time.perf_counter()
  step_losses, step_accuracies = [], []
  params, opt_state = state.params, state.opt_state
  for first in range(0, len(order), chunk):
    idx = order[first : first + chunk]
    batches = place_batch({"x": dataset.x_train[idx], "y": dataset.y_train[idx]}, placement.batch)
    params, opt_state, metrics = run_chunk(params, opt_state, batches)
    step_losses.append(metrics["loss"])
    step_accuracies.append(metrics["accuracy"])
    bar.advance(len(idx))  # no device read: dispatch is asynchronous
  losses = np.concatenate([np.asarray(x) for x in step_losses])  # one sync per epoch
  if state.compile_seconds is None:
    state.compile_seconds = time.perf_counter() - epoch_start
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    bad_step = state.step + int(bad[0]) + 1
    raise TrainingDiverged(
      f"training stopped: the loss became {losses[bad[0]]} at step {bad_step} (epoch"
      f" {epoch}, batch {int(bad[0]) + 1} of {len(order)}); the last finite loss"
      f" was {_last_finite(state.history, losses[: bad[0]])}. Lower the learning rate"
      f" (now {lr}) or check the inputs.",
      step=bad_step,
      epoch=epoch,
    )
  state.params, state.opt_state = params, opt_state
  state.step += len(losses)
  epoch_seconds = time.perf_counter() - epoch_start
  test = _objectives.evaluate(
    model.apply, params, dataset.x_test, dataset.y_test, num_classes=dataset.num_classes
  )
  record = {
    "epoch": epoch,
    "step": state.step,
    "train_loss": float(losses.mean()),
    "train_accuracy": float(np.concatenate([np.asarray(a) for a in step_accuracies]).mean()),
    "test_loss": test["loss"],
    "test_accuracy": test["accuracy"],
    "test_recall": test["recall"],
    "epoch_seconds": epoch_seconds,
  }
  state.history.append(record)
  bar.update_text(f"epoch {epoch} test acc {test['accuracy']:.3f}")
  return record


def _summary(
  state: _State,
  model: Model,
  dataset: xdata.Dataset,
  placement: _Placement,
  seconds_total: float,
) -> dict:
  """Step 4: final metrics and timings (``summary.json``)."""
  final = state.history[-1]
  timed = [r["epoch_seconds"] for r in state.history[1:]] or [final["epoch_seconds"]]
  device = placement.device
  return {
    "status": "ok",
    "model": model.name,
    "dataset": dataset.name,
    "num_parameters": num_parameters(state.params),
    "num_train": len(dataset.y_train),
    "num_test": len(dataset.y_test),
    "steps": state.step,
    "final_train_loss": final["train_loss"],
    "final_test_loss": final["test_loss"],
    "final_test_accuracy": final["test_accuracy"],
    "final_test_recall": final["test_recall"],
    "seconds_total": seconds_total,
    "seconds_first_epoch_with_compile": state.compile_seconds,
    "seconds_per_epoch_median": float(np.median(timed)),
    "device": f"{device.platform} {device.device_kind}",
    "devices": placement.num_devices,
  }


def train(
  config: TrainConfig,
  *,
  dataset: xdata.Dataset | None = None,
  params: Any = None,
  loss_fn: Callable | None = None,
  out_dir: str | Path | None = None,
  overwrite: bool = False,
  progress: bool = True,
  max_steps: int | None = None,
) -> TrainResult:
  """Train ``config.model`` on ``config.dataset``; optionally write the run's files.

  The steps: check the config, place state and batches (:func:`_placement`), build the
  model, loss and optimizer, run the epochs (:func:`_run_epoch`, each ending with the
  divergence check and the test metrics), and summarise (:func:`_summary`).

  Args:
    config: the run; ``lr=None`` uses :func:`~xentax.training.default_lr`.
    dataset: use this dataset instead of loading ``config.dataset``.
    params: initial parameters instead of ``model.init(key)``.
    loss_fn: a custom ``loss_fn(logits, labels)`` instead of ``config.loss``.
    out_dir: if given, write ``config.json``, ``metrics.jsonl`` (one line per epoch, as
      it happens), ``summary.json`` and ``curves.png`` there, each file atomically.
    overwrite: clear ``out_dir`` first if it holds an earlier run (else it must be empty).
    progress: show a ``rich`` progress bar.
    max_steps: stop after this many steps in total (smoke tests).

  Returns:
    A :class:`TrainResult`.

  Raises:
    TrainingDiverged: the training loss became NaN or infinite (the message names the
      step); ``summary.json`` records it too.
    KeyboardInterrupt: re-raised after ``summary.json`` records ``"status":
      "interrupted"`` with the epochs completed so far (and ``curves.png`` plots them).
    ValueError: bad configuration (unknown names, non-positive sizes, a model that does
      not fit the dataset, missing device, more ``devices`` than exist, a batch size not
      divisible by ``devices``).
    FileExistsError: ``out_dir`` holds files and not ``overwrite``.
  """
  config = validate_config(config.resolved(), check_dataset=dataset is None)
  placement = _placement(config)
  if dataset is None:
    dataset = xdata.load(config.dataset, seed=config.seed, **config.dataset_options)
  n = len(dataset.y_train)
  batch_size = _batch_size(config, n, placement.num_devices)
  model = build_model(config.model, dataset, **config.model_options)
  if loss_fn is None:
    loss_fn = _objectives.make_loss(
      config.loss, labels=dataset.y_train, num_classes=dataset.num_classes, **config.loss_options
    )
  optimizer = make_optimizer(config.optimizer, config.lr)  # type: ignore[arg-type]  # validate_config has set lr
  if params is None:
    params = model.init(jax.random.key(config.seed))
  params = jax.device_put(params, placement.state)
  state = _State(params, jax.device_put(optimizer.init(params), placement.state))
  run_chunk = make_multi_step(make_train_step(model.apply, loss_fn, optimizer))

  writer = None
  if out_dir is not None:
    writer = RunWriter(out_dir, config.to_json(), overwrite=overwrite)
  rng = np.random.default_rng(config.seed) if config.shuffle else None
  steps_per_epoch = -(-n // batch_size)
  total_steps = config.epochs * steps_per_epoch
  if max_steps is not None:
    total_steps = min(total_steps, max_steps)
  title = f"{model.name} on {dataset.name}: {config.loss}, {config.optimizer} lr={config.lr:g}"
  start = time.perf_counter()
  try:
    with progress_bar(total_steps, enabled=progress) as bar:
      for epoch in range(1, config.epochs + 1):
        if state.step >= total_steps:
          break
        order = epoch_order(n, batch_size, rng)[: total_steps - state.step]
        record = _run_epoch(
          epoch,
          state,
          run_chunk,
          model,
          dataset,
          order,
          chunk=config.steps_per_call or steps_per_epoch,
          placement=placement,
          bar=bar,
          lr=config.lr,  # type: ignore[arg-type]  # validate_config has set lr
        )
        if writer is not None:
          writer.log(record)
  except (TrainingDiverged, KeyboardInterrupt) as err:
    if writer is not None:
      _write_stopped(writer, err, state, title=title, objective=config.loss)
    raise
  summary = _summary(state, model, dataset, placement, time.perf_counter() - start)
  if writer is not None:
    writer.finish(summary, history=state.history, title=title, objective=config.loss)
  return TrainResult(params=state.params, history=state.history, summary=summary, model=model)


def _write_stopped(writer: RunWriter, err: BaseException, state: _State, **plot) -> None:
  """``summary.json`` (and the curves so far) of a run that diverged or was interrupted."""
  if isinstance(err, TrainingDiverged):
    summary = {"status": "diverged", "error": str(err), "step": err.step}
  else:
    summary = {"status": "interrupted", "step": state.step, "epochs_completed": len(state.history)}
  summary["curves"] = {
    key: [r[key] for r in state.history]
    for key in ("epoch", "train_loss", "test_loss", "train_accuracy", "test_accuracy")
  }
  writer.finish(summary, history=state.history, **plot)


def _last_finite(history, losses) -> str:
  finite = losses[np.isfinite(losses)]
  if finite.size:
    return f"{finite[-1]:.4g}"
  return f"{history[-1]['train_loss']:.4g} (mean of the previous epoch)" if history else "none"
