"""Moved to :mod:`suite.run.optuna_search` (rnnbench 0.3); this alias keeps old imports and pickles working for one release."""

import sys

from suite.run import optuna_search as _moved

sys.modules[__name__] = _moved
