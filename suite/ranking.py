"""Moved to :mod:`suite.analysis.ranking` (rnnbench 0.3); this alias keeps old imports and pickles working for one release."""

import sys

from suite.analysis import ranking as _moved

sys.modules[__name__] = _moved
