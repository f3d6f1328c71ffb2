"""Tests for xentax.data: offline datasets, splits and dtypes."""
