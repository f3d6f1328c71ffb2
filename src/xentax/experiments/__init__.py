"""The deck's applications and comparisons as experiments: by name, at three scales.

``xentax experiment NAME [--quick] [--out DIR]`` runs one; ``xentax reproduce`` runs them
all and renders their :class:`ExperimentResult` records.
"""

from xentax.experiments._common import SCALES as SCALES
from xentax.experiments._language import base_rate_cross_entropy as base_rate_cross_entropy
from xentax.experiments._language import unigram_cross_entropy as unigram_cross_entropy
from xentax.experiments._large_vocab import HEADS as HEADS
from xentax.experiments._large_vocab import HeadComparisonConfig as HeadComparisonConfig
from xentax.experiments._large_vocab import compare_heads as compare_heads
from xentax.experiments._large_vocab import head_loss as head_loss
from xentax.experiments._large_vocab import make_head_train_step as make_head_train_step
from xentax.experiments._many_classes import ManyClassesConfig as ManyClassesConfig
from xentax.experiments._many_classes import study as many_classes_study
from xentax.experiments._records import ExperimentResult as ExperimentResult
from xentax.experiments._records import RunRecord as RunRecord
from xentax.experiments._registry import EXPERIMENTS as EXPERIMENTS
from xentax.experiments._registry import Experiment as Experiment
from xentax.experiments._registry import check as check
from xentax.experiments._registry import run as run
from xentax.experiments._step_size import StepSizeStudy as StepSizeStudy
from xentax.experiments._step_size import step_size_errors as step_size_errors

__all__ = [
  "EXPERIMENTS",
  "HEADS",
  "SCALES",
  "Experiment",
  "ExperimentResult",
  "HeadComparisonConfig",
  "ManyClassesConfig",
  "RunRecord",
  "StepSizeStudy",
  "base_rate_cross_entropy",
  "check",
  "compare_heads",
  "head_loss",
  "make_head_train_step",
  "many_classes_study",
  "run",
  "step_size_errors",
  "unigram_cross_entropy",
]
