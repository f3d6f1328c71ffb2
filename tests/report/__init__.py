"""Tests for xentax.report."""
