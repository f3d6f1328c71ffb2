"""Experiment: small CNN on 8x8 digits.

Run alone with `python experiments/cnn_digits.py [--out DIR] [--quick]`;
`xentax reproduce` runs it in its "Training" section. The config and runner live in
`xentax.training.experiments`.
"""

import sys

from xentax.training.experiments import main

if __name__ == "__main__":
  sys.exit(main("cnn_digits"))
