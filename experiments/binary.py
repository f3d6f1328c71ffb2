"""Experiment: logistic regression: breast cancer; cat / not cat.

Run alone with `python experiments/binary.py [--out DIR] [--quick]`;
`xentax reproduce` runs it in its "Training" section. The config and runner live in
`xentax.training.experiments`.
"""

import sys

from xentax.training.experiments import main

if __name__ == "__main__":
  sys.exit(main("binary"))
