"""Candidate samplers for sampled softmax, with TensorFlow's semantics, in logs.

Each returns :class:`Candidates` ``(sampled_classes, true_log_q, sampled_log_q)``, what
TensorFlow's candidate samplers return as ``(sampled, true_expected_count,
sampled_expected_count)``, with the counts as logs, ready for
:func:`xentax.sampled_softmax_cross_entropy`.
"""

from xentax.sampling._candidates import Candidates as Candidates
from xentax.sampling._candidates import log_uniform_candidates as log_uniform_candidates
from xentax.sampling._candidates import uniform_candidates as uniform_candidates
from xentax.sampling._candidates import unigram_candidates as unigram_candidates

__all__ = ["Candidates", "log_uniform_candidates", "uniform_candidates", "unigram_candidates"]
