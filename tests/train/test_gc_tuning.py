"""The entry points' garbage-collector setting."""

import gc

from cnn_jax.train.gc_tuning import THRESHOLDS, tune_gc


def test_tune_gc_freezes_what_exists_and_raises_the_thresholds():
  old = gc.get_threshold()
  gc.set_threshold(700, 10, 10)  # Python's defaults
  try:
    tune_gc()
    assert gc.get_threshold() == THRESHOLDS
    assert gc.get_freeze_count() > 10_000  # at least jax's and pytest's objects
  finally:
    gc.set_threshold(*old)
