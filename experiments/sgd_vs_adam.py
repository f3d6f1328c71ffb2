"""Experiment: SGD vs momentum vs Adam on digits.

Run alone with `python experiments/sgd_vs_adam.py [--out DIR] [--quick]`;
`xentax reproduce` runs it in its "Training" section. The config and runner live in
`xentax.training.experiments`.
"""

import sys

from xentax.training.experiments import main

if __name__ == "__main__":
  sys.exit(main("sgd_vs_adam"))
