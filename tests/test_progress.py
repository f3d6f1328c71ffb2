"""xentax.progress: a bar that counts host-side, and a disabled bar that does nothing."""

from xentax.progress import progress_bar


def test_enabled_bar_counts_to_its_total():
  with progress_bar(3, label="gradcheck", unit="losses") as bar:
    for _ in range(3):
      bar.advance(1)
    bar.update_text("done")
    task = bar.progress.tasks[0]
    assert (task.completed, task.total, task.fields["status"]) == (3, 3, "done")


def test_disabled_bar_does_nothing():
  with progress_bar(3, enabled=False) as bar:
    bar.advance(1)
    bar.update_text("x")
    assert bar.progress is None
