"""Moved to :mod:`suite.store.lock` (rnnbench 0.3); this alias keeps old imports and pickles working for one release."""

import sys

from suite.store import lock as _moved

sys.modules[__name__] = _moved
