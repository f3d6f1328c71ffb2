"""Tests for xentax.losses."""
