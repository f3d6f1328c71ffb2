"""Experiment: plain CE vs class weights vs focal, 1:20 blobs.

Run alone with `python experiments/class_imbalance.py [--out DIR] [--quick]`;
`xentax reproduce` runs it in its "Training" section. The config and runner live in
`xentax.training.experiments`.
"""

import sys

from xentax.training.experiments import main

if __name__ == "__main__":
  sys.exit(main("class_imbalance"))
