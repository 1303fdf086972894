"""Moved to :mod:`suite.analysis.trajectories` (rnnbench 0.3); this alias keeps old imports and pickles working for one release."""

import sys

from suite.analysis import trajectories as _moved

sys.modules[__name__] = _moved
