"""Tests of ``xentax.gradcheck``: closed forms, finite differences, reports, the matrix."""
