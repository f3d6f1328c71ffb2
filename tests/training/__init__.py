"""Tests for xentax.training: models, the compiled loop, the deck's loop, experiments."""
