"""Moved to :mod:`suite.analysis.report` (rnnbench 0.3); this alias keeps old imports and pickles working for one release."""

import sys

from suite.analysis import report as _moved

sys.modules[__name__] = _moved
