"""Moved to :mod:`suite.store.results` (rnnbench 0.3); this alias keeps old imports and pickles working for one release."""

import sys

from suite.store import results as _moved

sys.modules[__name__] = _moved
