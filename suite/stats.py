"""Moved to :mod:`suite.analysis.stats` (rnnbench 0.3); this alias keeps old imports and pickles working for one release."""

import sys

from suite.analysis import stats as _moved

sys.modules[__name__] = _moved
