"""The typed record of one benchmark measurement.

Design notes:
  Suites build their rows as dicts (each suite knows its own parameters: a loss and a
  mode, token and vocabulary sizes, a device count); :meth:`BenchRecord.from_dict` sorts a
  row into the fields every measurement has (time, spread, ratio, memory, device) and two
  open dicts: ``params`` (what was measured) and ``rates`` (throughputs). A new suite
  therefore needs no new record type. :mod:`xentax.records` writes the JSON.
"""

from __future__ import annotations

import dataclasses
from typing import Any

DEVICE_KEYS = ("platform", "device_kind", "device_count", "jax", "jaxlib", "python", "machine")
RATE_KEYS = ("gbps", "gflops", "useful_gflops", "steps_per_s", "examples_per_s")


@dataclasses.dataclass
class BenchRecord:
  """One implementation measured at one configuration.

  Attributes:
    suite: the suite that measured it (a key of :data:`xentax.bench.SUITES`, or
      ``"reference"``).
    implementation: what was timed (e.g. ``"xentax"``, ``"fused (block 4096)"``).
    params: what it was measured on (``loss``, ``mode``, ``batch``, ``classes``,
      ``dtype``, ``num_tokens``, ``dim``, ``vocab_size``, ``devices``...).
    median_s, spread, repeats, compile_s: steady-state timing (None when only compiled);
      spread is ``(max - min) / median`` of the repeats.
    ratio, baseline: ``median_s`` over the baseline implementation's, measured side by
      side in the same process.
    temp_bytes, argument_bytes, output_bytes: from ``compiled.memory_analysis()``.
    rates: throughputs (``gbps``, ``gflops``, ``useful_gflops``, ``steps_per_s``...).
    device: platform, device kind and count, versions.
  """

  suite: str
  implementation: str
  params: dict[str, Any] = dataclasses.field(default_factory=dict)
  median_s: float | None = None
  spread: float | None = None
  repeats: int | None = None
  compile_s: float | None = None
  ratio: float | None = None
  baseline: str | None = None
  temp_bytes: int | None = None
  argument_bytes: int | None = None
  output_bytes: int | None = None
  rates: dict[str, float] = dataclasses.field(default_factory=dict)
  device: dict[str, Any] = dataclasses.field(default_factory=dict)

  @classmethod
  def from_dict(cls, row: dict[str, Any]) -> BenchRecord:
    """Sort a suite's row (flat dict) into a record; unknown keys go to ``params``. A row
    read back from a JSON record (``params``, ``rates`` and ``device`` nested) round-trips."""
    if isinstance(row, cls):
      return row
    tables = ("params", "rates", "device")
    fields = {f.name for f in dataclasses.fields(cls)} - set(tables)
    kwargs: dict[str, Any] = {"params": {}, "rates": {}, "device": {}}
    for key, value in row.items():
      if key in tables and isinstance(value, dict):
        kwargs[key].update(value)
      elif key in fields:
        kwargs[key] = value
      elif key in DEVICE_KEYS:
        kwargs["device"][key] = value
      elif key in RATE_KEYS:
        kwargs["rates"][key] = value
      else:
        kwargs["params"][key] = value
    return cls(**kwargs)

  def get(self, key: str, default: Any = None) -> Any:
    """A field, parameter, rate or device entry by name (the first that has it)."""
    if key in {f.name for f in dataclasses.fields(self)}:
      return getattr(self, key)
    for table in (self.params, self.rates, self.device):
      if key in table:
        return table[key]
    return default
