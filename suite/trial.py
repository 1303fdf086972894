"""Moved to :mod:`suite.run.trial` (rnnbench 0.3); this alias keeps old imports and pickles working for one release."""

import sys

from suite.run import trial as _moved

sys.modules[__name__] = _moved
