"""Moved to :mod:`suite.analysis.plots` (rnnbench 0.3); this alias keeps old imports and pickles working for one release."""

import sys

from suite.analysis import plots as _moved

sys.modules[__name__] = _moved
