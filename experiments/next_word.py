"""Experiment: next-word prediction vs the unigram baseline.

Run alone with `python experiments/next_word.py [--out DIR] [--quick]`;
`xentax reproduce` runs it in its "Training" section. The config and runner live in
`xentax.training.experiments`.
"""

import sys

from xentax.training.experiments import main

if __name__ == "__main__":
  sys.exit(main("next_word"))
