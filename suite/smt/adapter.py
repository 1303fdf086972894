"""The SMT transition ``U(m_t, x_{t+1}) -> m_{t+1}``: a suite RNN behind adapters, or Transformer blocks.

:class:`ModelStudent` (``updater: model``) lets *any* :class:`~suite.contracts.RecurrentModel` be
the transition. Two linear adapters connect the teacher's memory and the model's flat state:

* ``state_label(m) = to_state(flatten(m))`` (linear, or a small MLP) -- the state the model *should* be in when the teacher's
  memory is ``m`` (an empty context -- nothing read yet -- maps to ``model.initial_state``, the
  zero state the suite's evaluation starts from);
* ``memory(h) = RMSNorm(from_state(h))`` -- the memory a state encodes.

One transition is ``h' = model.step(state_label(m_t), encode(x_{t+1}))``; ``U(m_t, x) = memory(h')``.
The model itself (its ``step``, ``encode`` and ``readout``) is what the suite evaluates afterwards:
its own rollout ``h_{t+1} = step(h_t, u_{t+1})`` runs in state space, so the method supervises the
transition in state space as well (``h'`` against ``state_label(m_{t+1})``) besides the reference's
memory-space ``L_dyn``; the adapters are training-only machinery.

:class:`TransformerUpdater` (``updater: transformer``) is the reference's "RNN": non-causal
Transformer blocks over ``[m_t tokens; emb(x_{t+1})]`` whose first K outputs (RMS-normalised) are
``m_{t+1}``, with a readout shaped like the teacher's decoder (copyable from it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from suite.contracts import RecurrentModel
from suite.smt.teacher import (
    MemoryDecoder,
    Teacher,
    TeacherConfig,
    rms_normalize,
    transformer_stack,
)


def _adapter(n_in: int, n_out: int, hidden: int) -> nn.Module:
    """Linear map, or a one-hidden-layer GELU MLP when ``hidden > 0``."""
    if hidden <= 0:
        return nn.Linear(n_in, n_out)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, n_out))


class ModelStudent(nn.Module):
    """A suite RNN as the SMT transition (the model is referenced, not owned: its parameters are not
    in ``self.parameters()``, only the two adapters are)."""

    def __init__(self, model: RecurrentModel, K: int, d_mem: int, hidden: int = 0) -> None:
        super().__init__()
        object.__setattr__(self, "_model", model)  # keep the model out of this module's parameters
        self.K, self.d_mem = K, d_mem
        self.to_state = _adapter(K * d_mem, model.state_size, hidden)
        self.from_state = _adapter(model.state_size, K * d_mem, hidden)

    @property
    def model(self) -> RecurrentModel:
        return self._model  # type: ignore[attr-defined]

    def state_label(self, m: Tensor, empty: Tensor | None = None) -> Tensor:
        """``[B, K, d_mem]`` memories -> ``[B, D]`` states; ``empty`` rows get the initial state."""
        h = self.to_state(m.reshape(m.shape[0], -1))
        if empty is not None and bool(empty.any()):
            h0 = self.model.initial_state(h.shape[0], h.device, h.dtype)
            h = torch.where(empty[:, None], h0, h)
        return h

    def memory(self, h: Tensor) -> Tensor:
        return rms_normalize(self.from_state(h).reshape(h.shape[0], self.K, self.d_mem))

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        """One model step on tokens ``x [B]``."""
        return self.model.step(h, self.model.encode(x[:, None])[:, 0])

    def readout(self, h: Tensor, x: Tensor | None = None) -> Tensor:
        """Next-token logits of states ``h``; ``x [B]``: the last token read (for models whose
        readout also uses the current input features, as ``forward`` passes them)."""
        u = None if x is None else self.model.encode(x[:, None])[:, 0]
        return self.model.readout(h, u)

    def transition(self, m: Tensor, x: Tensor, empty: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``U(m, x)``: the predicted next memory ``[B, K, d_mem]`` and the new state ``h'``."""
        h_next = self.step(self.state_label(m, empty), x)
        return self.memory(h_next), h_next


class TransformerUpdater(nn.Module):
    """The reference's Transformer-block transition over memory tokens, with a decoder readout."""

    def __init__(self, cfg: TeacherConfig, layers: int) -> None:
        super().__init__()
        self.K, self.d_mem = cfg.K, cfg.d_mem
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.inp = nn.Linear(cfg.d_mem, cfg.dim) if cfg.d_mem != cfg.dim else nn.Identity()
        self.pos = nn.Parameter(torch.randn(cfg.K + 1, cfg.dim) * 0.02)
        self.blocks = transformer_stack(cfg.dim, layers, cfg.heads, cfg.ff_mult)
        self.out = nn.Linear(cfg.dim, cfg.d_mem) if cfg.d_mem != cfg.dim else nn.Identity()
        self.readout_decoder = MemoryDecoder(cfg)

    def transition(self, m: Tensor, x: Tensor, empty: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``U(m, x)``; the second value is the new memory again (the "state" is the memory)."""
        inp = torch.cat([self.inp(m), self.embed(x)[:, None]], dim=1) + self.pos
        m_next = rms_normalize(self.out(self.blocks(inp)[:, : self.K]))
        return m_next, m_next

    def readout(self, m: Tensor, x: Tensor | None = None) -> Tensor:
        return self.readout_decoder.next_logits(m)

    @torch.no_grad()
    def copy_readout_from(self, teacher: Teacher) -> None:
        """The reference's trick: the teacher's decoder becomes the readout."""
        self.readout_decoder.load_state_dict(teacher.dec.state_dict())
