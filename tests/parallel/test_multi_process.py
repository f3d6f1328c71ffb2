"""Two processes on loopback with jax.distributed.initialize compute the same loss and grads."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import xentax

pytestmark = pytest.mark.slow  # starts two JAX processes

WORKER = Path(__file__).with_name("_two_process_worker.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_agree_with_each_other_and_with_one_device(tmp_path):
  port = _free_port()
  env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_"))}
  outs = [tmp_path / f"process{i}.json" for i in range(2)]
  procs = [
    subprocess.Popen(
      [sys.executable, str(WORKER), str(port), str(i), str(outs[i])],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  logs = []
  for proc in procs:
    try:
      logs.append(proc.communicate(timeout=180)[0])
    finally:
      proc.kill()
  for proc, log in zip(procs, logs, strict=True):
    assert proc.returncode == 0, log[-3000:]
  results = [json.loads(out.read_text()) for out in outs]
  assert [r["process_count"] for r in results] == [2, 2]
  assert [r["devices"] for r in results] == [4, 4]
  assert results[0]["loss"] == results[1]["loss"]
  np.testing.assert_array_equal(results[0]["grad"], results[1]["grad"])

  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 16)) * 2
  labels = rng.integers(0, 16, 6)
  labels[1] = -100
  value, grad = jax.value_and_grad(
    lambda z: xentax.sparse_categorical_cross_entropy_with_logits(
      z, labels, ignore_index=-100, label_smoothing=0.1
    )
  )(logits)
  np.testing.assert_allclose(results[0]["loss"], value, rtol=1e-12)
  np.testing.assert_allclose(results[0]["grad"], grad, rtol=1e-11, atol=1e-14)

  # The fused loss under jit on NamedSharding inputs of an Explicit and an Auto mesh over both
  # processes.
  hidden = rng.normal(size=(8, 4))
  weight = rng.normal(size=(4, 16)) / 2
  fused_labels = rng.integers(0, 16, 8)
  value, (d_hidden, d_weight) = jax.value_and_grad(
    lambda h, w: xentax.fused_linear_cross_entropy(h, w, fused_labels, z_loss=1e-2), argnums=(0, 1)
  )(hidden, weight)
  for r in results:
    assert set(r["fused"]) == {"Explicit", "Auto"}
    for got in r["fused"].values():
      np.testing.assert_allclose(got["loss"], value, rtol=1e-12)
      np.testing.assert_allclose(got["d_hidden"], d_hidden, rtol=1e-11, atol=1e-14)
      np.testing.assert_allclose(got["d_weight"], d_weight, rtol=1e-11, atol=1e-14)
