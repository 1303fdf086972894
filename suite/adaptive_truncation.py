"""Moved to :mod:`suite.training.adaptive_truncation` (rnnbench 0.3); this alias keeps old imports and pickles working for one release."""

import sys

from suite.training import adaptive_truncation as _moved

sys.modules[__name__] = _moved
