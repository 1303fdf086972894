"""Recurrences that are linear in the state, trained with the parallel scan (Blelloch 1990;
Orvieto et al. 2023 LRU; Smith et al. 2023 S5; Feng et al. 2024 minGRU; Gu & Dao 2023 Mamba).

Every model here declares LINEAR_RECURRENCE: ``recurrence_coeffs(u)`` returns ``(a, b)``, each
``[B, T, D]``, with ``c_t = a_t * c_{t-1} + b_t`` on the model's *scan state* ``c``, and ``forward``
solves that recurrence with :func:`suite.ops.linear_scan` (chunked scan on CPU, associative or
accelerated scan on CUDA). ``step`` is the one-step form of the same recurrence, so the step loop
and ``forward`` agree to rounding (tested in float64). The gates depend on the input only, never on
the state: that is what makes them scannable. One recurrent layer per model (a stack would not
be a single linear recurrence in ``u``), a linear head to the outputs.

* ``mingru`` (Feng et al. 2024): ``z = sigmoid(W_z u)``, ``h~ = W_h u``,
  ``h_t = (1 - z) h_{t-1} + z h~``: ``a = 1 - z``, ``b = z h~``. Gates are computed directly
  (sigmoid, not the log-space form): ``a`` lies in (0, 1), so the real scan is stable.
* ``minlstm``: ``f, i = sigmoid(W_f u), sigmoid(W_i u)``, normalised ``f' = f / (f + i)``,
  ``i' = 1 - f'``, ``h_t = f' h_{t-1} + i' h~``. ``f'`` is evaluated as
  ``sigmoid(log sigmoid(k_f) - log sigmoid(k_i))``, which cannot divide 0 by 0.
* ``lru`` (Orvieto et al. 2023): complex diagonal ``lambda = exp(-exp(nu) + i exp(theta))``
  (so ``|lambda| < 1``), ``x_t = lambda x_{t-1} + gamma * (B u_t)`` with ``gamma = exp(gamma_log)``
  initialised to ``sqrt(1 - |lambda|^2)``, output ``head(gelu(Re(C x_t) + D u_t))`` (the paper's
  layer nonlinearity, without the GLU). The **flat state is real**: ``[Re x, Im x]`` concatenated,
  ``state_size = 2 * hidden_size``, so ``step`` stays real-valued for ``torch.func`` (it is written
  in real arithmetic). ``recurrence_coeffs`` returns **complex** ``(a, b)`` over the complex scan
  state ``x`` (``[B, T, hidden_size]``); :meth:`LRU.to_scan_state` / :meth:`LRU.from_scan_state`
  convert between the two. Ring initialisation of ``|lambda|`` in ``[r_min, r_max]`` (area-uniform)
  and phase in ``[0, max_phase]``.
* ``s6``: Mamba's selective diagonal SSM recurrence (input-dependent ``Delta``, ``B``, ``C``), see
  :class:`S6`; flat state ``[B, hidden_size * state_dim]``; its readout needs ``u``.

Inputs may have zero channels (DSR tasks): the input projections then reduce to learned biases.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from suite.contracts import LINEAR_RECURRENCE, STEP, IOSpec, Params, RecurrentModel
from suite.models.encoders import InputEncoder
from suite.ops import linear_scan


class _InputProjection(nn.Module):
    """``W u + c``; with zero input features only the bias ``c`` (nn.Linear(0, n) warns and zero-inits)."""

    def __init__(self, features: int, out: int, bias: bool = True) -> None:
        super().__init__()
        self.features = features
        if features > 0:
            self.linear: nn.Linear | None = nn.Linear(features, out, bias=bias)
            self.bias = None
        else:
            self.linear = None
            self.bias = nn.Parameter(torch.empty(out).uniform_(-0.5, 0.5)) if bias else None
            self.out = out

    def forward(self, u: Tensor) -> Tensor:
        if self.linear is not None:
            return self.linear(u)
        shape = (*u.shape[:-1], self.out)
        if self.bias is None:
            return u.new_zeros(shape)
        return self.bias.expand(shape)


class ScanParams(Params):
    hidden_size: int = Field(32, gt=0, description="recurrent units (complex modes for the LRU)")
    embed_dim: int = Field(32, gt=0, description="embedding size when the inputs are tokens")
    scan_backend: Literal["auto", "loop", "chunked", "associative", "accelerated"] = Field(
        "auto", description="suite.ops.linear_scan backend")


class _ScanModel(RecurrentModel):
    """Shared plumbing: encoder, scan-state conversion, scan ``forward``, one-step ``step``."""

    Params = ScanParams
    capabilities = frozenset({STEP, LINEAR_RECURRENCE})

    def __init__(self, input: IOSpec, output: IOSpec, params: ScanParams) -> None:
        super().__init__(input, output, params)
        self.encoder = InputEncoder(input, params.embed_dim)
        self.hidden_size = params.hidden_size
        self.backend = params.scan_backend

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    # scan state <-> flat state (identity for the real models)
    def to_scan_state(self, h: Tensor) -> Tensor:
        return h

    def from_scan_state(self, c: Tensor) -> Tensor:
        return c

    def recurrence_coeffs(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, b)`` ``[B, T, D]`` for features ``u [B, T, I]``: ``c_t = a_t * c_{t-1} + b_t``."""
        raise NotImplementedError

    def step(self, h: Tensor, u: Tensor) -> Tensor:
        a, b = self.recurrence_coeffs(u.unsqueeze(1))
        return a[:, 0] * h + b[:, 0]

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        u = self.encode(x)
        a, b = self.recurrence_coeffs(u)
        c0 = None if h0 is None else self.to_scan_state(h0)
        if u.shape[1] == 0:
            h0 = self.initial_state(u.shape[0], u.device, u.dtype) if h0 is None else h0
            return self.readout(h0.new_zeros(h0.shape[0], 0, h0.shape[-1]), u), h0
        hs = self.from_scan_state(linear_scan(a, b, c0, backend=self.backend))
        return self.readout(hs, u), hs[:, -1]


class MinGRU(_ScanModel):
    name = "mingru"
    summary = "minGRU (gates from the input only), trained by parallel scan; one layer + linear head"

    def __init__(self, input: IOSpec, output: IOSpec, params: ScanParams) -> None:
        super().__init__(input, output, params)
        H = params.hidden_size
        self.state_size = H
        self.proj = _InputProjection(self.encoder.features, 2 * H)
        self.head = nn.Linear(H, output.size)

    def recurrence_coeffs(self, u: Tensor) -> tuple[Tensor, Tensor]:
        k, h_tilde = self.proj(u).chunk(2, dim=-1)
        z = torch.sigmoid(k)
        return torch.sigmoid(-k), z * h_tilde  # 1 - z computed without cancellation

    def readout(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        return self.head(h)


class MinLSTM(_ScanModel):
    name = "minlstm"
    summary = "minLSTM (normalised input-only forget/input gates), trained by parallel scan; one layer + linear head"

    def __init__(self, input: IOSpec, output: IOSpec, params: ScanParams) -> None:
        super().__init__(input, output, params)
        H = params.hidden_size
        self.state_size = H
        self.proj = _InputProjection(self.encoder.features, 3 * H)
        self.head = nn.Linear(H, output.size)

    def recurrence_coeffs(self, u: Tensor) -> tuple[Tensor, Tensor]:
        kf, ki, h_tilde = self.proj(u).chunk(3, dim=-1)
        log_f, log_i = F.logsigmoid(kf), F.logsigmoid(ki)
        f_norm = torch.sigmoid(log_f - log_i)  # f / (f + i)
        i_norm = torch.sigmoid(log_i - log_f)  # i / (f + i)
        return f_norm, i_norm * h_tilde

    def readout(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        return self.head(h)


class LRUParams(ScanParams):
    model_dim: int | None = Field(None, gt=0, description="features of Re(C x) + D u before the head (None: hidden_size)")
    r_min: float = Field(0.0, ge=0.0, lt=1.0, description="smallest initial |lambda|")
    r_max: float = Field(0.99, gt=0.0, lt=1.0, description="largest initial |lambda|")
    max_phase: float = Field(6.28, gt=0.0, description="initial phases uniform in [0, max_phase]")

    @model_validator(mode="after")
    def _ring(self) -> "LRUParams":
        if self.r_min >= self.r_max:
            raise ValueError(f"r_min ({self.r_min}) must be below r_max ({self.r_max})")
        return self


class LRU(_ScanModel):
    name = "lru"
    summary = "Linear Recurrent Unit (complex diagonal, exp(-exp(nu) + i exp(theta)), gamma-normalised), parallel scan"
    Params = LRUParams

    def __init__(self, input: IOSpec, output: IOSpec, params: LRUParams) -> None:
        super().__init__(input, output, params)
        D = params.hidden_size
        H = params.model_dim or D
        n_in = self.encoder.features
        self.state_size = 2 * D
        u = torch.rand(D)
        r2 = u * (params.r_max**2 - params.r_min**2) + params.r_min**2
        self.nu_log = nn.Parameter(torch.log(-0.5 * torch.log(r2.clamp_min(1e-12))))
        self.theta_log = nn.Parameter(torch.log((params.max_phase * torch.rand(D)).clamp_min(1e-4)))
        lam_abs = torch.exp(-torch.exp(self.nu_log.detach()))
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt((1 - lam_abs**2).clamp_min(1e-12))))
        scale_b = 1.0 / math.sqrt(2 * max(n_in, 1))
        self.B_re = nn.Parameter(torch.randn(D, n_in) * scale_b)
        self.B_im = nn.Parameter(torch.randn(D, n_in) * scale_b)
        self.C_re = nn.Parameter(torch.randn(H, D) / math.sqrt(D))
        self.C_im = nn.Parameter(torch.randn(H, D) / math.sqrt(D))
        self.D = nn.Linear(n_in, H, bias=False) if n_in > 0 else None
        self.head = nn.Linear(H, output.size)

    def eigenvalues(self) -> Tensor:
        """The complex diagonal ``lambda [hidden_size]`` (|lambda| < 1 by construction)."""
        return torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))

    def _lambda_real(self) -> tuple[Tensor, Tensor]:
        mod = torch.exp(-torch.exp(self.nu_log))
        phase = torch.exp(self.theta_log)
        return mod * torch.cos(phase), mod * torch.sin(phase)

    def _input(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``gamma * (B u)`` as real and imaginary parts."""
        g = torch.exp(self.gamma_log)
        return (u @ self.B_re.T) * g, (u @ self.B_im.T) * g

    def to_scan_state(self, h: Tensor) -> Tensor:
        D = self.hidden_size
        return torch.complex(h[..., :D], h[..., D:])

    def from_scan_state(self, c: Tensor) -> Tensor:
        return torch.cat([c.real, c.imag], -1)

    def recurrence_coeffs(self, u: Tensor) -> tuple[Tensor, Tensor]:
        bu_re, bu_im = self._input(u)
        b = torch.complex(bu_re, bu_im)
        a = self.eigenvalues().to(b.dtype).expand_as(b)
        return a, b

    def step(self, h: Tensor, u: Tensor) -> Tensor:
        D = self.hidden_size
        re, im = h[..., :D], h[..., D:]
        lr, li = self._lambda_real()
        bu_re, bu_im = self._input(u)
        return torch.cat([lr * re - li * im + bu_re, lr * im + li * re + bu_im], -1)

    def readout(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        D = self.hidden_size
        y = h[..., :D] @ self.C_re.T - h[..., D:] @ self.C_im.T  # Re(C x)
        if self.D is not None and u is not None:
            y = y + self.D(u)
        return self.head(F.gelu(y))


class S6Params(ScanParams):
    state_dim: int = Field(8, gt=0, description="SSM state size N per channel")
    dt_min: float = Field(1e-3, gt=0.0, description="smallest initial step size Delta")
    dt_max: float = Field(1e-1, gt=0.0, description="largest initial step size Delta")


class S6(_ScanModel):
    """Selective diagonal SSM (Mamba's S6 recurrence, single layer, no convolution).

    Channels ``x_t = W_x u_t`` (``hidden_size`` of them), ``Delta_t = softplus(W_d u_t + b_d)``,
    ``B_t = W_B u_t``, ``C_t = W_C u_t`` (``state_dim`` each), ``A = -exp(A_log)`` ``[H, N]``:
    ``h_t = exp(Delta_t A) * h_{t-1} + Delta_t B_t x_t`` (per channel and state), output
    ``head((C_t . h_t + D x_t) * silu(W_z u_t))``. Flat state ``[B, H * N]``. Initialisation as in
    ``mamba_ssm``: ``A_log = log(1..N)``, ``Delta`` log-uniform in ``[dt_min, dt_max]`` via the bias.
    """

    name = "s6"
    summary = "selective diagonal SSM (Mamba S6 recurrence: input-dependent Delta, B, C), parallel scan"
    Params = S6Params

    def __init__(self, input: IOSpec, output: IOSpec, params: S6Params) -> None:
        super().__init__(input, output, params)
        H, N = params.hidden_size, params.state_dim
        self.state_dim = N
        self.state_size = H * N
        n_in = self.encoder.features
        self.proj = _InputProjection(n_in, 2 * H + 2 * N)  # x, z, B, C
        self.dt_proj = _InputProjection(n_in, H)
        dt = torch.exp(torch.rand(H) * (math.log(params.dt_max) - math.log(params.dt_min)) + math.log(params.dt_min))
        with torch.no_grad():
            bias = self.dt_proj.linear.bias if self.dt_proj.linear is not None else self.dt_proj.bias
            bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^{-1}(dt)
            if self.dt_proj.linear is not None:
                self.dt_proj.linear.weight.mul_(0.1)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(H, 1))
        self.D = nn.Parameter(torch.ones(H))
        self.head = nn.Linear(H, output.size)

    def _parts(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        H, N = self.hidden_size, self.state_dim
        x, z, Bm, Cm = self.proj(u).split([H, H, N, N], dim=-1)
        delta = F.softplus(self.dt_proj(u))
        return x, z, Bm, Cm, delta

    def recurrence_coeffs(self, u: Tensor) -> tuple[Tensor, Tensor]:
        x, _, Bm, _, delta = self._parts(u)
        A = -torch.exp(self.A_log)  # [H, N]
        a = torch.exp(delta.unsqueeze(-1) * A)  # [..., H, N]
        b = (delta * x).unsqueeze(-1) * Bm.unsqueeze(-2)
        return a.flatten(-2), b.flatten(-2)

    def readout(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        H, N = self.hidden_size, self.state_dim
        if u is None:
            raise ValueError("s6 readout needs the input features u (C_t, D x_t and the gate depend on them)")
        x, z, _, Cm, _ = self._parts(u)
        y = (h.unflatten(-1, (H, N)) * Cm.unsqueeze(-2)).sum(-1) + self.D * x
        return self.head(y * F.silu(z))
