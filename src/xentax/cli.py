"""The ``xentax`` command line: a thin argparse layer over the library."""

from __future__ import annotations

import argparse
import sys

import xentax
from xentax.bench._run import STANDALONE_SUITES, SUITES
from xentax.training import add_train_arguments


def _reproduce(args: argparse.Namespace) -> int:
  from xentax.report import reproduce

  path = reproduce(args.out, quick=args.quick, only=args.only)
  print(f"wrote {path}")
  return 0


def _bench(args: argparse.Namespace) -> int:
  import jax

  # Virtual CPU devices for the parallel suite; only affects the CPU backend, and only
  # before it starts (in a process that already ran JAX, its devices are used as they are).
  try:
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
  except (RuntimeError, AttributeError):
    pass
  if args.device == "cpu":
    jax.config.update("jax_platforms", "cpu")
  elif args.device == "gpu" and jax.default_backend() not in ("gpu", "cuda", "rocm"):
    print(f"--device gpu: JAX's default backend is {jax.default_backend()!r}", file=sys.stderr)
    return 1
  from xentax import bench

  suites = list(bench.SUITES) if args.suite == "all" else [args.suite]
  records = bench.run(suites, quick=args.quick, out=args.out)
  print(bench.markdown(records))
  if args.out:
    bench.write_json(records, args.out)
    print(f"wrote {args.out}")
  return 0


def _train(args: argparse.Namespace) -> int:
  if args.devices is not None and args.devices > 1:
    import jax

    # N virtual CPU devices for --devices N on a CPU-only machine; this only affects the
    # CPU backend, and only before it starts (a process that already ran JAX keeps its own).
    try:
      jax.config.update("jax_num_cpu_devices", args.devices)
    except RuntimeError:
      pass
  from xentax.training import TrainConfig, TrainingDiverged, train

  fields = (
    "model",
    "dataset",
    "loss",
    "optimizer",
    "epochs",
    "batch_size",
    "lr",
    "seed",
    "device",
    "devices",
  )
  config = TrainConfig(**{name: getattr(args, name) for name in fields})
  out = args.out or f"runs/{args.model}_{args.dataset}"
  try:
    result = train(config, out_dir=out)
  except TrainingDiverged as err:
    print(err, file=sys.stderr)
    return 1
  s = result.summary
  print(f"test accuracy {s['final_test_accuracy']:.4f}, test loss {s['final_test_loss']:.4f}")
  print(f"wrote {out}")
  return 0


def _gradcheck(args: argparse.Namespace) -> int:
  import json

  from xentax import gradcheck

  dtypes = ("float64", "float32", "bfloat16") if args.dtype == "all" else (args.dtype,)
  records = gradcheck.run_matrix(dtypes, losses=args.loss)
  print(gradcheck.format_table(records))
  print()
  print(gradcheck.format_summary(records))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(records, f, indent=1)
    print(f"wrote {args.json}")
  return 0 if all(r["passed"] for r in records) else 1


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="xentax", description="Cross-entropy losses for JAX: verify, train, benchmark, report."
  )
  parser.add_argument("--version", action="version", version=f"xentax {xentax.__version__}")
  commands = parser.add_subparsers(dest="command", required=True)

  reproduce = commands.add_parser(
    "reproduce", help="run every experiment and write results/REPORT.md with figures"
  )
  reproduce.add_argument("--out", default="results", help="output folder (default: results)")
  reproduce.add_argument("--quick", action="store_true", help="smaller, faster runs")
  reproduce.add_argument(
    "--only", nargs="+", metavar="SECTION", help="run only these report sections"
  )
  reproduce.set_defaults(run=_reproduce)

  bench = commands.add_parser("bench", help="benchmark the losses on this machine's device")
  bench.add_argument(
    "--suite",
    default="all",
    choices=[*SUITES, *STANDALONE_SUITES, "all"],
    help="'all' runs every suite but gpu (every accelerator figure, run alone)",
  )
  bench.add_argument("--quick", action="store_true", help="CPU-sized run (minutes)")
  bench.add_argument(
    "--device", choices=["cpu", "gpu"], help="run on this backend (default: JAX's default)"
  )
  bench.add_argument("--out", help="write the JSON records here")
  bench.add_argument(
    "--cpu-devices", type=int, default=8, help="virtual CPU devices for the parallel suite"
  )
  bench.set_defaults(run=_bench)

  train = commands.add_parser("train", help="train a model on a dataset; writes metrics and plots")
  add_train_arguments(train)
  train.set_defaults(run=_train)
  gradcheck = commands.add_parser(
    "gradcheck", help="check every loss's gradient against closed forms and finite differences"
  )
  gradcheck.add_argument(
    "--dtype", choices=["float64", "float32", "bfloat16", "all"], default="all"
  )
  gradcheck.add_argument("--json", metavar="PATH", help="also write one record per check")
  gradcheck.add_argument("--loss", nargs="+", metavar="LOSS", help="check only these losses")
  gradcheck.set_defaults(run=_gradcheck)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  return args.run(args)


if __name__ == "__main__":
  sys.exit(main())
