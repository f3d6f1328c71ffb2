"""Tests for xentax.parallel."""
