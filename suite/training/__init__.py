"""The toolbox method plugins import (what benchopt's ``benchmark_utils`` is for a benchmark).

Plugins share code through here and never import each other. A method's ``train`` is then the training
procedure only; the pieces:

* :mod:`suite.training.updates` -- :func:`update` (zero_grad / backward / clip / step / ctx.step) and :class:`Timer`;
* :mod:`suite.training.windows` -- :func:`batches`, :func:`chunk_bounds`, :func:`window_starts`,
  :class:`StatelessWindows`, :class:`PhasedStatefulWindows`, :func:`cut_streams`, :func:`burn_in_loss`,
  :func:`buffered_segment`;
* :mod:`suite.training.gradients` -- :class:`GradientAverage`, :func:`scored_positions`,
  :func:`trainable_parameters`, for ``probe_gradient`` hooks;
* :mod:`suite.training.newton` -- :class:`FunctionalCell`, :func:`deer_forward`, :func:`solver_options`,
  :class:`WarmStartCache`, :func:`check_solve` (Newton diagnostics and ``on_nonconvergence``);
* :mod:`suite.training.forcing` -- generalized teacher forcing: :func:`force`, :func:`gtf_sequential`,
  :func:`gtf_parallel`, :class:`AlphaSchedule`.
"""

from suite.training.gradients import GradientAverage, parameter_gradients, scored_positions, trainable_parameters
from suite.training.updates import Timer, update
from suite.training.windows import (
    PhasedStatefulWindows,
    StatelessWindows,
    batches,
    buffered_segment,
    burn_in_loss,
    chunk_bounds,
    cut_streams,
    window_starts,
)

__all__ = ["GradientAverage", "PhasedStatefulWindows", "StatelessWindows", "Timer", "batches", "buffered_segment",
           "burn_in_loss", "chunk_bounds", "cut_streams", "parameter_gradients", "scored_positions", "trainable_parameters",
           "update", "window_starts"]
