"""Experiment: the deck's per-example loop vs the compiled loop.

Run alone with `python experiments/deck_vs_compiled.py [--out DIR] [--quick]`;
`xentax reproduce` runs it in its "Training" section. The config and runner live in
`xentax.training.experiments`.
"""

import sys

from xentax.training.experiments import main

if __name__ == "__main__":
  sys.exit(main("deck_vs_compiled"))
