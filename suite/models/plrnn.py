"""Shallow piecewise-linear RNN (shPLRNN) for dynamical systems reconstruction (Hess et al., ICML 2023).

Latent state ``z`` of size ``M`` (the flat state; ``state_size = M``)::

    clipped (default):  z_t = A * z_{t-1} + W1 (relu(W2 z_{t-1} + h2) - relu(W2 z_{t-1})) + h1 + C u_t
    plain:              z_t = A * z_{t-1} + W1 relu(W2 z_{t-1} + h2) + h1 + C u_t

``A [M]`` is diagonal, ``W1 [M, L]``, ``W2 [L, M]`` with ``L = hidden_dim``; the input term ``C u_t``
exists only when the task has inputs (DSR tasks have none). The clipped form has bounded orbits
when ``max |A| < 1``. The analytic Jacobian (capability ANALYTIC_JACOBIAN) is
``diag(A) + W1 diag(1[W2 z > -h2] - 1[W2 z > 0]) W2`` (plain: ``diag(A) + W1 diag(1[W2 z + h2 > 0]) W2``).

Observation model (``observation``):

* ``identity`` (default, GTF's ``Identity``): ``x_t = z_t[:N]``, the first N latent units are the
  observations (requires ``M >= N``). Observation inversion ``O^{-1}(x) = [x; L x]`` with a trained
  ``L [(M - N), N]`` (GTF's ``init_state``); GTF forcing signals ``[x; 0]`` force only the first N
  units (partial forcing when ``M > N``).
* ``linear``: ``x_t = B z_t + b``; inversion and forcing signals by the pseudo-inverse
  ``B^+ (x - b)`` (all M units forced). Token outputs always use a linear readout.

Initialisation follows the GTF repository: ``A`` = diagonal of a normalised positive-definite
matrix (Talathi & Vartak), ``W1``, ``W2``, ``h2`` uniform in ``+-1/sqrt(fan-in)``, ``h1 = 0``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from suite.contracts import ANALYTIC_JACOBIAN, OBSERVATION_INVERSE, STEP, IOSpec, Params, RecurrentModel
from suite.models.encoders import InputEncoder


class ShPLRNNParams(Params):
    latent_dim: int | None = Field(None, gt=0, description="latent size M (None: the number of outputs N)")
    hidden_dim: int = Field(50, gt=0, description="hidden layer size L of the shallow ReLU network")
    clipped: bool = Field(True, description="clipped nonlinearity relu(W2 z + h2) - relu(W2 z) (bounded orbits)")
    observation: Literal["identity", "linear"] = Field(
        "identity", description="identity on the first N latent units, or a linear readout B z + b")
    embed_dim: int = Field(32, gt=0, description="embedding size when the inputs are tokens")


def _uniform(*shape: int, fan_in: int) -> Tensor:
    r = 1.0 / max(fan_in, 1) ** 0.5
    return torch.empty(*shape).uniform_(-r, r)


def _normalized_positive_definite(m: int) -> Tensor:
    R = torch.randn(m, m, dtype=torch.float64)
    K = R.T @ R / m + torch.eye(m, dtype=torch.float64)
    return (K / torch.linalg.eigvalsh(K).abs().max()).float()


class ShPLRNN(RecurrentModel):
    name = "shplrnn"
    summary = ("shallow PLRNN (clipped by default) with identity/linear observation model and analytic Jacobian "
               "(GTF, Hess et al. 2023)")
    Params = ShPLRNNParams
    capabilities = frozenset({STEP, ANALYTIC_JACOBIAN, OBSERVATION_INVERSE})

    def __init__(self, input: IOSpec, output: IOSpec, params: ShPLRNNParams) -> None:
        super().__init__(input, output, params)
        N = output.size
        self.observation = "linear" if output.is_tokens else params.observation
        M = params.latent_dim if params.latent_dim is not None else N
        if self.observation == "identity" and M < N:
            raise ValueError(f"identity observation needs latent_dim >= outputs ({M} < {N})")
        L = params.hidden_dim
        self.latent_dim, self.hidden_dim, self.obs_dim = M, L, N
        self.clipped = params.clipped
        self.state_size = M
        self.encoder = InputEncoder(input, params.embed_dim)
        n_in = self.encoder.features
        self.A = nn.Parameter(torch.diagonal(_normalized_positive_definite(M)).clone())
        self.W1 = nn.Parameter(_uniform(M, L, fan_in=L))
        self.W2 = nn.Parameter(_uniform(L, M, fan_in=M))
        self.h1 = nn.Parameter(torch.zeros(M))
        self.h2 = nn.Parameter(_uniform(L, fan_in=L) if params.clipped else torch.zeros(L))
        self.C = nn.Parameter(nn.init.xavier_uniform_(torch.empty(M, n_in))) if n_in > 0 else None
        if self.observation == "identity":
            self.L = nn.Parameter(_uniform(M - N, N, fan_in=N)) if M > N else None
            self.obs = None
        else:
            self.L = None
            self.obs = nn.Linear(M, N)

    # --- dynamics -----------------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def step(self, h: Tensor, u: Tensor) -> Tensor:
        pre = h @ self.W2.T
        if self.clipped:
            phi = F.relu(pre + self.h2) - F.relu(pre)
        else:
            phi = F.relu(pre + self.h2)
        out = self.A * h + phi @ self.W1.T + self.h1
        if self.C is not None:
            out = out + u @ self.C.T
        return out

    def jacobian(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        """d step / d h for states ``h [..., M]``: ``[..., M, M]`` (closed form, see module docstring)."""
        pre = h @ self.W2.T
        if self.clipped:
            d = (pre > -self.h2).to(h.dtype) - (pre > 0).to(h.dtype)
        else:
            d = (pre + self.h2 > 0).to(h.dtype)
        J = (self.W1 * d.unsqueeze(-2)) @ self.W2  # [..., M, L] @ [L, M]
        return J + torch.diag_embed(self.A.expand_as(h))

    def norm_upper_bound(self) -> Tensor:
        """Parameter bound on every Jacobian's spectral norm: max|A| + ||W1||_2 ||W2||_2 (GTF)."""
        return self.A.abs().max() + torch.linalg.matrix_norm(self.W1, 2) * torch.linalg.matrix_norm(self.W2, 2)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        u = self.encode(x)
        h = self.initial_state(u.shape[0], u.device, u.dtype) if h0 is None else h0
        states = []
        for u_t in u.unbind(1):
            h = self.step(h, u_t)
            states.append(h)
        if not states:
            return self.readout(h.new_zeros(h.shape[0], 0, h.shape[-1])), h
        hs = torch.stack(states, 1)
        return self.readout(hs, u), h

    # --- observation model --------------------------------------------------------------------------
    def readout(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        if self.obs is None:
            return h[..., : self.obs_dim]
        return self.obs(h)

    def _pinv_apply(self, x: Tensor) -> Tensor:
        assert self.obs is not None
        return (x - self.obs.bias) @ torch.linalg.pinv(self.obs.weight).T

    def observation_inverse(self, x: Tensor) -> Tensor:
        """Latent state explaining observation ``x [..., N]`` (initial state of runs and windows)."""
        if self.obs is not None:
            return self._pinv_apply(x)
        if self.L is None:
            return x
        return torch.cat([x, x @ self.L.T], -1)

    def forcing_signals(self, y: Tensor) -> tuple[Tensor, int]:
        """GTF forcing signals ``zhat [..., M]`` for observations ``y [..., N]`` and the forced units."""
        if self.obs is not None:
            return self._pinv_apply(y), self.latent_dim
        pad = y.new_zeros(*y.shape[:-1], self.latent_dim - self.obs_dim)
        return torch.cat([y, pad], -1), self.obs_dim
