"""Moved to :mod:`suite.store.results_v1` (rnnbench 0.3); this alias keeps old imports and pickles working for one release."""

import sys

from suite.store import results_v1 as _moved

sys.modules[__name__] = _moved
