"""The ``xentax`` command line: all of its argparse, over the library's public API.

Design notes:
  * Only the standard library is imported at the top; each command imports what it needs
    when it runs, and a subcommand's arguments (whose choices come from the library) are
    built only when that subcommand is named. So ``xentax --help`` starts no JAX.
  * ``xentax train``'s flags are built from :class:`xentax.training.TrainConfig`'s fields:
    the default, type, choices and help of each are written once, in the dataclass.
  * Every user mistake (a bad flag value, a model that does not fit the dataset, an unknown
    name, an output path that cannot be written) is checked before any work starts and
    before any folder is created, and ends with exit status 2 and one line naming the
    problem and the valid choices. Ctrl-C ends with status 130 and a line saying what was
    kept.
  * The losses need only jax and numpy; a command that needs the ``research`` extra
    (training, experiments, benchmarks, the report) and finds it missing exits 2 with the
    line that installs it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# The packages of the ``research`` extra (pyproject.toml), by import name.
RESEARCH_MODULES = ("optax", "flax", "chex", "matplotlib", "rich", "sklearn")


class UsageError(Exception):
  """A user mistake found before any work: exit 2 with this message."""


class _Parser(argparse.ArgumentParser):
  """argparse, but a mistake is one line (``prog: error: ...``), exit 2, no usage dump."""

  def error(self, message: str):
    self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _choices_help(text: str, choices) -> str:
  return f"{text}; one of: {', '.join(map(str, choices))}"


def _writable_file(path: str, flag: str) -> Path:
  """``path`` if a file can be written there (its folder exists and is writable)."""
  p = Path(path)
  folder = p.parent if str(p.parent) else Path(".")
  if p.is_dir():
    raise UsageError(f"{flag} {p} is a folder; give a file path")
  if not folder.is_dir():
    raise UsageError(f"{flag} {p}: folder {folder} does not exist; create it first")
  if not os.access(folder, os.W_OK | os.X_OK):
    raise UsageError(f"{flag} {p}: folder {folder} is not writable")
  return p


def _writable_folder(path: str, flag: str) -> Path:
  """``path`` if it is (or can be created as) a writable folder; creates nothing."""
  p = Path(path)
  if p.exists() and not p.is_dir():
    raise UsageError(f"{flag} {p} is a file, not a folder")
  existing = p
  while not existing.exists():
    existing = existing.parent
  if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
    raise UsageError(f"{flag} {p}: cannot create or write into {existing}")
  return p


def _set_cpu_devices(count: int) -> None:
  """N virtual CPU devices (CPU backend only, and only before JAX starts its backend)."""
  import jax

  try:
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError:
    pass  # the backend already started: its devices are used as they are


# ---------------------------------------------------------------------------------------
# xentax train


_TYPES = {"str": str, "int": int, "float": float}


def _train_arguments(parser: argparse.ArgumentParser) -> None:
  import dataclasses

  from xentax.data import DATASETS
  from xentax.training import DEFAULT_LR, TrainConfig

  choices = {"dataset": sorted(DATASETS)}
  for field in dataclasses.fields(TrainConfig):
    if "help" not in field.metadata:
      continue  # the *_options dicts: for the Python API
    flag = "--" + field.name.replace("_", "-")
    kind = str(field.type).replace(" | None", "")
    options = field.metadata.get("choices") or choices.get(field.name)
    default = field.default
    shown = "unset" if default is None else default
    help_text = f"{field.metadata['help']} (default: {shown})"
    if kind == "bool":
      parser.add_argument(
        flag, default=default, action=argparse.BooleanOptionalAction, help=help_text
      )
      continue
    parser.add_argument(
      flag,
      type=_TYPES[kind],
      default=default,
      choices=options,
      metavar=field.metadata.get("metavar", None if options else field.name.upper()),
      help=help_text,
    )
  parser.add_argument("--out", help="run folder (default: runs/<model>_<dataset>)")
  parser.add_argument(
    "--overwrite", action="store_true", help="clear --out first if it holds an earlier run"
  )
  rows: dict[str, list[str]] = {}
  for (model, optimizer), lr in DEFAULT_LR.items():
    rows.setdefault(model, []).append(f"{optimizer} {lr:g}")
  parser.epilog = "default --lr by model and optimizer:\n" + "\n".join(
    f"  {model}: {', '.join(lrs)}" for model, lrs in rows.items()
  )
  parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _train_config(args: argparse.Namespace):
  import dataclasses

  from xentax.training import TrainConfig, validate_config

  names = [f.name for f in dataclasses.fields(TrainConfig) if "help" in f.metadata]
  config = TrainConfig(**{name: getattr(args, name) for name in names})
  try:
    return validate_config(config)
  except ValueError as err:
    raise UsageError(str(err)) from None


def _train(args: argparse.Namespace) -> int:
  config = _train_config(args)
  out = Path(args.out or f"runs/{config.model}_{config.dataset}")
  from xentax.training import check_run_dir

  try:
    check_run_dir(out, overwrite=args.overwrite)
  except (FileExistsError, PermissionError) as err:
    raise UsageError(str(err)) from None
  if config.devices is not None and config.devices > 1:
    _set_cpu_devices(config.devices)
  from xentax.training import TrainingDiverged, train

  try:
    result = train(config, out_dir=out, overwrite=args.overwrite)
  except ValueError as err:  # raised before the run folder is written (devices, batch size)
    raise UsageError(str(err)) from None
  except TrainingDiverged as err:
    print(err, file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print(
      f"interrupted: {out}/summary.json has status 'interrupted' and the curves so far",
      file=sys.stderr,
    )
    return EXIT_INTERRUPTED
  s = result.summary
  print(f"test accuracy {s['final_test_accuracy']:.4f}, test loss {s['final_test_loss']:.4f}")
  print(f"wrote {out}")
  return 0


# ---------------------------------------------------------------------------------------
# xentax experiment


def _experiment_arguments(parser: argparse.ArgumentParser) -> None:
  from xentax.experiments import EXPERIMENTS, SCALES

  parser.add_argument(
    "name",
    choices=list(EXPERIMENTS),
    metavar="NAME",
    help=_choices_help("the experiment", EXPERIMENTS),
  )
  parser.add_argument("--quick", action="store_true", help="fewer epochs, smaller sets")
  parser.add_argument(
    "--scale", choices=SCALES, help="full, quick or smoke (overrides --quick; default: full)"
  )
  parser.add_argument(
    "--out", default="results/training", help="output folder (default: results/training)"
  )


def _experiment(args: argparse.Namespace) -> int:
  out = _writable_folder(args.out, "--out")
  scale = args.scale or ("quick" if args.quick else "full")
  from xentax import experiments

  result = experiments.run(args.name, out, scale=scale)
  for row in result.rows:
    bar = "" if row.bar is None else f"  [{row.bar}: {'met' if row.bar_met else 'NOT met'}]"
    print(f"{row.run}: test accuracy {row.test_accuracy:.4f}, loss {row.test_loss:.4f}{bar}")
  print(f"wrote {out / args.name} in {result.seconds:.1f}s")
  return 0


# ---------------------------------------------------------------------------------------
# xentax bench


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
  from xentax.bench import STANDALONE_SUITES, SUITES

  names = [*SUITES, *STANDALONE_SUITES, "all"]
  parser.add_argument(
    "--suite",
    nargs="+",
    default=["all"],
    choices=names,
    metavar="SUITE",
    help=_choices_help(
      "suites to run (default: all; 'all' leaves out gpu, run alone, and targets, the"
      " losses suite's float32 target shapes)",
      names,
    ),
  )
  parser.add_argument(
    "--device",
    choices=["cpu", "gpu"],
    help="run on this backend; --device gpu stops if JAX has no GPU (default: JAX's default)",
  )
  parser.add_argument("--quick", action="store_true", help="CPU-sized run (minutes)")
  parser.add_argument("--out", metavar="PATH.json", help="also write the JSON records here")
  parser.add_argument(
    "--cpu-devices",
    type=int,
    default=8,
    help="virtual CPU devices, created only for suites that use several (default: 8)",
  )


def _bench(args: argparse.Namespace) -> int:
  if args.out:
    _writable_file(args.out, "--out")
  if args.cpu_devices < 1:
    raise UsageError(f"--cpu-devices must be >= 1; got {args.cpu_devices}")
  from xentax import bench

  try:
    names = bench.check_suites(args.suite)
  except ValueError as err:
    raise UsageError(str(err)) from None
  if args.device == "cpu":
    import jax

    jax.config.update("jax_platforms", "cpu")
  elif args.device == "gpu":
    import jax

    if jax.default_backend() not in ("gpu", "cuda", "rocm"):
      raise UsageError(f"--device gpu: JAX's default backend is {jax.default_backend()!r}")
  if names == ["gpu"]:
    records = bench.run_gpu(quick=args.quick, out=args.out)  # prints, writes as it goes
    print(bench.gpu_markdown(records))
    if args.out:
      print(f"wrote {args.out}")
    return 0
  if any(bench.SUITES[name].cpu_devices > 1 for name in names):
    _set_cpu_devices(args.cpu_devices)
  records = bench.run(names, quick=args.quick, progress=True)
  print(bench.markdown(records))
  if args.out:
    bench.write_json(records, args.out)
    print(f"wrote {args.out}")
  return 0


# ---------------------------------------------------------------------------------------
# xentax gradcheck


def _gradcheck_arguments(parser: argparse.ArgumentParser) -> None:
  from xentax.gradcheck import checked_names

  names = checked_names()
  parser.add_argument(
    "--dtype",
    choices=["float64", "float32", "bfloat16", "all"],
    default="all",
    help="gradient dtype to check (default: all)",
  )
  parser.add_argument("--json", metavar="PATH", help="also write one record per check")
  parser.add_argument(
    "--loss",
    nargs="+",
    choices=names,
    metavar="LOSS",
    help=_choices_help("check only these (default: all)", names),
  )


def _gradcheck(args: argparse.Namespace) -> int:
  if args.json:
    _writable_file(args.json, "--json")
  from xentax import gradcheck, records

  dtypes = gradcheck.DTYPES if args.dtype == "all" else (args.dtype,)
  checks = gradcheck.check_matrix(dtypes, losses=args.loss, progress=True)
  if not checks:
    # Nothing checked is not a pass: these losses are not in the matrix at this dtype.
    print(
      f"xentax gradcheck: no check of {', '.join(args.loss or ['any loss'])} at dtype "
      f"{args.dtype}; see docs/gradcheck.md for the dtypes each loss runs in.",
      file=sys.stderr,
    )
    return 2
  rows = [c.as_dict() for c in checks]
  print(gradcheck.format_table(rows))
  print()
  print(gradcheck.format_summary(rows))
  if args.json:
    records.write_json(args.json, checks)
    print(f"wrote {args.json}")
  return 0 if all(c.passed for c in checks) else 1


# ---------------------------------------------------------------------------------------
# xentax reproduce


def _reproduce_arguments(parser: argparse.ArgumentParser) -> None:
  from xentax.report import SECTIONS

  parser.add_argument("--out", default="results", help="output folder (default: results)")
  parser.add_argument("--quick", action="store_true", help="smaller, faster runs")
  parser.add_argument(
    "--only",
    nargs="+",
    choices=list(SECTIONS),
    metavar="SECTION",
    help=_choices_help("run only these report sections", SECTIONS),
  )


def _reproduce(args: argparse.Namespace) -> int:
  out = _writable_folder(args.out, "--out")
  from xentax.report import reproduce

  try:
    path = reproduce(out, quick=args.quick, only=args.only)
  except KeyboardInterrupt:
    print(f"interrupted: {out / 'REPORT.md'} holds the sections completed", file=sys.stderr)
    return EXIT_INTERRUPTED
  print(f"wrote {path}")
  return 0


# ---------------------------------------------------------------------------------------
# xentax data

DATA_ACTIONS = ("fetch",)
DATA_SETS = ("movielens-100k",)


def _data_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
    "action", choices=DATA_ACTIONS, metavar="ACTION", help=_choices_help("what to do", DATA_ACTIONS)
  )
  parser.add_argument(
    "name", choices=DATA_SETS, metavar="NAME", help=_choices_help("the dataset", DATA_SETS)
  )
  parser.add_argument(
    "--cache-dir",
    metavar="DIR",
    help="folder to keep the download in (default: $XDG_CACHE_HOME/xentax, else ~/.cache/xentax)",
  )


def _data(args: argparse.Namespace) -> int:
  cache = None if args.cache_dir is None else _writable_folder(args.cache_dir, "--cache-dir")
  from xentax import data

  try:
    path = data.fetch_movielens_100k(cache)
    ratings = data.movielens_100k(path)
  except (RuntimeError, ValueError, OSError) as err:  # pip failed, a corrupt or unwritable cache
    print(f"xentax data: error: {err}", file=sys.stderr)
    return 1
  print(path)
  print(
    f"{args.name}: {ratings.num_users:,} users, {ratings.num_items:,} items, "
    f"{ratings.num_ratings:,} ratings ({len(ratings.train_users):,} train, "
    f"{len(ratings.test_users):,} test: each user's latest)"
  )
  return 0


# ---------------------------------------------------------------------------------------

COMMANDS = {
  "train": (
    "train a model on a dataset; writes metrics and plots",
    _train_arguments,
    _train,
  ),
  "experiment": (
    "run one experiment of xentax.experiments",
    _experiment_arguments,
    _experiment,
  ),
  "gradcheck": (
    "check every loss's gradient against closed forms and finite differences",
    _gradcheck_arguments,
    _gradcheck,
  ),
  "bench": ("benchmark the losses on this machine's device", _bench_arguments, _bench),
  "reproduce": (
    "run every experiment and write results/REPORT.md with figures",
    _reproduce_arguments,
    _reproduce,
  ),
  "data": (
    "download a public dataset into the local cache (xentax data fetch movielens-100k)",
    _data_arguments,
    _data,
  ),
}


def build_parser(commands=None) -> argparse.ArgumentParser:
  """The parser; only the subcommands in ``commands`` (all when None) get their arguments."""
  from xentax import __version__

  parser = _Parser(
    prog="xentax", description="Cross-entropy losses for JAX: verify, train, benchmark, report."
  )
  parser.add_argument("--version", action="version", version=f"xentax {__version__}")
  subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
  for name, (help_text, add_arguments, run) in COMMANDS.items():
    sub = subparsers.add_parser(name, help=help_text, description=help_text)
    if commands is None or name in commands:
      add_arguments(sub)
    sub.set_defaults(run=run)
  return parser


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  named = [a for a in argv if a in COMMANDS][:1]
  try:
    args = build_parser(named).parse_args(argv)
    return args.run(args)
  except UsageError as err:
    print(f"xentax {args.command}: error: {err}", file=sys.stderr)
    return EXIT_USAGE
  except ModuleNotFoundError as err:
    if (err.name or "").split(".")[0] not in RESEARCH_MODULES:
      raise
    command = named[0] if named else "xentax"
    print(
      f"xentax {command}: error: needs {err.name}, from the research extra: "
      "pip install 'xentax[research]'",
      file=sys.stderr,
    )
    return EXIT_USAGE
  except KeyboardInterrupt:
    print(f"xentax {args.command}: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


if __name__ == "__main__":
  sys.exit(main())
