"""Supervised Memory Training (SMT, Kumar & Isola 2026) building blocks for ``methods/smt.py``.

* :mod:`suite.smt.teacher` -- the Transformer teacher: an encoder with K register tokens that maps a
  sliding context of Tc tokens to a memory ``m`` (K RMS-normalised tokens of ``d_mem`` values) and a
  causal decoder that predicts the next Tf tokens from ``m`` (the predictive-state loss).
* :mod:`suite.smt.adapter` -- the transition ``U(m_t, x_{t+1}) -> m_{t+1}``: any suite RNN behind
  memory <-> state adapters (:class:`ModelStudent`), or the reference's Transformer-block updater.
* :mod:`suite.smt.losses` -- dynamics, relative state, uniformity and discounted decoder losses.
* :mod:`suite.smt.batch` -- window sampling and the index bookkeeping of one transition per sample.
* :mod:`suite.smt.objective` -- the SMT forward (one transition per sample) and the DMT rollout.
* :mod:`suite.smt.evaluation` -- the paper's "teacher reads a prefix, RNN continues" protocol.
"""
