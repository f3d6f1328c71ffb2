"""Tests for xentax.bench."""
