"""xentax tests."""
