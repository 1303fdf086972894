"""Moved to :mod:`suite.training.gradient_fidelity` (rnnbench 0.3); this alias keeps old imports and pickles working for one release."""

import sys

from suite.training import gradient_fidelity as _moved

sys.modules[__name__] = _moved
