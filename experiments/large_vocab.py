"""Experiment: next-word model at V = 32768: fused vs full-logits loss.

Run alone with `python experiments/large_vocab.py [--out DIR] [--quick]`;
`xentax reproduce` runs it in its "Large vocabularies" section. The config and runner live
in `xentax.training.experiments`.
"""

import sys

from xentax.training.experiments import main

if __name__ == "__main__":
  sys.exit(main("large_vocab"))
