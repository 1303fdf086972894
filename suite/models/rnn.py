"""Classic recurrent cells (LSTM, GRU, Elman) over PyTorch's fused sequence kernels.

``forward`` runs ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (cuDNN on GPU); ``step`` re-implements one
step functionally with the *same* parameters, so the step loop (used by DEER, adaptive TBPTT's
gradient-norm estimate and the oracles) and the fused kernel agree to rounding. The state is flat:
``[h_1 .. h_L]`` (GRU, Elman) or ``[h_1 .. h_L, c_1 .. c_L]`` (LSTM) for ``L`` layers.

``jacobian_diagonal(h, u)`` gives the diagonal of d step / d h in closed form (``[N, state_size]``,
O(state) work instead of the O(state^2) of a full Jacobian): quasi-DEER uses it. A unit's own
previous value enters its update only through its own recurrent weights (``W_hh[i, i]``), so each
layer's diagonal needs only the diagonals of its recurrent weight blocks.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from suite.contracts import FUSED_SEQUENCE, STEP, IOSpec, Params, RecurrentModel
from suite.models.encoders import InputEncoder


class RNNParams(Params):
    hidden_size: int = Field(32, gt=0, description="units per layer")
    num_layers: int = Field(1, gt=0, description="stacked layers")
    embed_dim: int = Field(32, gt=0, description="embedding size when the inputs are tokens")


class _FusedRNNModel(RecurrentModel):
    """Shared plumbing: encoder, fused recurrent module, linear readout of the top layer."""

    Params = RNNParams
    capabilities = frozenset({STEP, FUSED_SEQUENCE})
    cells_per_layer: ClassVar[int] = 1  # LSTM carries (h, c)
    # longest sequence handed to the fused module in one call (cuDNN refused T = 1e5 on an H200, took 1e4)
    fused_max_len: ClassVar[int] = 16384

    def _make_rnn(self, input_size: int, p: RNNParams) -> nn.Module:
        raise NotImplementedError

    def __init__(self, input: IOSpec, output: IOSpec, params: RNNParams) -> None:
        super().__init__(input, output, params)
        self.encoder = InputEncoder(input, params.embed_dim)
        self.hidden_size = params.hidden_size
        self.num_layers = params.num_layers
        self.rnn = self._make_rnn(self.encoder.features, params)
        self.head = nn.Linear(params.hidden_size, output.size)
        self.state_size = self.cells_per_layer * params.num_layers * params.hidden_size

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def readout(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        top = (self.num_layers - 1) * self.hidden_size
        return self.head(h[..., top : top + self.hidden_size])

    # flat state <-> [layers, B, H] tensors of the fused module
    def _unflatten(self, h: Tensor) -> list[Tensor]:
        chunks = h.reshape(h.shape[0], self.cells_per_layer * self.num_layers, self.hidden_size)
        return [c.transpose(0, 1).contiguous() for c in chunks.split(self.num_layers, dim=1)]

    def _flatten(self, parts: list[Tensor]) -> Tensor:
        return torch.cat([p.transpose(0, 1).reshape(p.shape[1], -1) for p in parts], dim=-1)

    def _layer_weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        r = self.rnn
        return (
            getattr(r, f"weight_ih_l{layer}"),
            getattr(r, f"weight_hh_l{layer}"),
            getattr(r, f"bias_ih_l{layer}"),
            getattr(r, f"bias_hh_l{layer}"),
        )

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        u = self.encode(x)
        if h0 is None and type(self).initial_state is not RecurrentModel.initial_state:
            h0 = self.initial_state(u.shape[0], u.device, u.dtype)  # a subclass with its own start state
        hx = None  # otherwise the fused module starts from zeros itself, as initial_state would
        if h0 is not None:
            state = self._unflatten(h0)
            hx = tuple(state) if len(state) > 1 else state[0]
        if u.shape[1] <= self.fused_max_len:
            out, hx = self.rnn(u, hx)
        else:  # cuDNN refuses very long sequences (seen at T = 1e5): run in pieces, state carried
            pieces = []
            for piece in u.split(self.fused_max_len, dim=1):
                o, hx = self.rnn(piece, hx)
                pieces.append(o)
            out = torch.cat(pieces, 1)
        last_parts = list(hx) if isinstance(hx, tuple) else [hx]
        return self.head(out), self._flatten(last_parts)


def _diag_blocks(w_hh: Tensor, gates: int) -> list[Tensor]:
    """The diagonals of the ``gates`` stacked ``[H, H]`` blocks of a recurrent weight ``[gates*H, H]``."""
    return [blk.diagonal() for blk in w_hh.chunk(gates, dim=0)]


class LSTM(_FusedRNNModel):
    name = "lstm"
    summary = "LSTM (nn.LSTM fused kernel; functional step on the same weights)"
    cells_per_layer = 2

    def _make_rnn(self, input_size: int, p: RNNParams) -> nn.Module:
        return nn.LSTM(input_size, p.hidden_size, p.num_layers, batch_first=True)

    def step(self, h: Tensor, u: Tensor) -> Tensor:
        L, H = self.num_layers, self.hidden_size
        hs, cs = h[:, : L * H], h[:, L * H :]
        new_h, new_c, inp = [], [], u
        for layer in range(L):
            w_ih, w_hh, b_ih, b_hh = self._layer_weights(layer)
            h_l, c_l = hs[:, layer * H : (layer + 1) * H], cs[:, layer * H : (layer + 1) * H]
            gates = F.linear(inp, w_ih, b_ih) + F.linear(h_l, w_hh, b_hh)
            i, f, g, o = gates.chunk(4, dim=-1)
            c_new = torch.sigmoid(f) * c_l + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            new_h.append(h_new)
            new_c.append(c_new)
            inp = h_new
        return torch.cat(new_h + new_c, dim=-1)

    def jacobian_diagonal(self, h: Tensor, u: Tensor) -> Tensor:
        """Diagonal of d step / d h: ``[dh'_i/dh_i per layer, dc'_i/dc_i per layer]``."""
        L, H = self.num_layers, self.hidden_size
        hs, cs = h[:, : L * H], h[:, L * H :]
        d_h, d_c, inp = [], [], u
        for layer in range(L):
            w_ih, w_hh, b_ih, b_hh = self._layer_weights(layer)
            h_l, c_l = hs[:, layer * H : (layer + 1) * H], cs[:, layer * H : (layer + 1) * H]
            gates = F.linear(inp, w_ih, b_ih) + F.linear(h_l, w_hh, b_hh)
            i, f, g, o = gates.chunk(4, dim=-1)
            wi, wf, wg, wo = _diag_blocks(w_hh, 4)
            si, sf, so, tg = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(g)
            c_new = sf * c_l + si * tg
            tc = torch.tanh(c_new)
            dc_dh = sf * (1 - sf) * wf * c_l + si * (1 - si) * wi * tg + si * (1 - tg * tg) * wg
            d_h.append(so * (1 - so) * wo * tc + so * (1 - tc * tc) * dc_dh)
            d_c.append(sf)  # the gates do not read c
            inp = so * tc
        return torch.cat(d_h + d_c, dim=-1)


class GRU(_FusedRNNModel):
    name = "gru"
    summary = "GRU (nn.GRU fused kernel; functional step on the same weights)"

    def _make_rnn(self, input_size: int, p: RNNParams) -> nn.Module:
        return nn.GRU(input_size, p.hidden_size, p.num_layers, batch_first=True)

    def step(self, h: Tensor, u: Tensor) -> Tensor:
        H, out, inp = self.hidden_size, [], u
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._layer_weights(layer)
            h_l = h[:, layer * H : (layer + 1) * H]
            xr, xz, xn = F.linear(inp, w_ih, b_ih).chunk(3, dim=-1)
            hr, hz, hn = F.linear(h_l, w_hh, b_hh).chunk(3, dim=-1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h_new = (1 - z) * n + z * h_l
            out.append(h_new)
            inp = h_new
        return torch.cat(out, dim=-1)

    def jacobian_diagonal(self, h: Tensor, u: Tensor) -> Tensor:
        """Diagonal of d step / d h (one ``[N, H]`` block per layer)."""
        H, out, inp = self.hidden_size, [], u
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._layer_weights(layer)
            h_l = h[:, layer * H : (layer + 1) * H]
            xr, xz, xn = F.linear(inp, w_ih, b_ih).chunk(3, dim=-1)
            hr, hz, hn = F.linear(h_l, w_hh, b_hh).chunk(3, dim=-1)
            wr, wz, wn = _diag_blocks(w_hh, 3)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            dn = (1 - n * n) * (r * (1 - r) * wr * hn + r * wn)
            dz = z * (1 - z) * wz
            out.append(dz * (h_l - n) + (1 - z) * dn + z)
            inp = (1 - z) * n + z * h_l
        return torch.cat(out, dim=-1)


class Elman(_FusedRNNModel):
    name = "elman"
    summary = "Elman tanh RNN (nn.RNN fused kernel; functional step on the same weights)"

    def _make_rnn(self, input_size: int, p: RNNParams) -> nn.Module:
        return nn.RNN(input_size, p.hidden_size, p.num_layers, nonlinearity="tanh", batch_first=True)

    def step(self, h: Tensor, u: Tensor) -> Tensor:
        H, out, inp = self.hidden_size, [], u
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._layer_weights(layer)
            h_new = torch.tanh(F.linear(inp, w_ih, b_ih) + F.linear(h[:, layer * H : (layer + 1) * H], w_hh, b_hh))
            out.append(h_new)
            inp = h_new
        return torch.cat(out, dim=-1)

    def jacobian_diagonal(self, h: Tensor, u: Tensor) -> Tensor:
        """Diagonal of d step / d h: ``(1 - h'^2) * diag(W_hh)`` per layer."""
        H, out, inp = self.hidden_size, [], u
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._layer_weights(layer)
            h_new = torch.tanh(F.linear(inp, w_ih, b_ih) + F.linear(h[:, layer * H : (layer + 1) * H], w_hh, b_hh))
            out.append((1 - h_new * h_new) * w_hh.diagonal())
            inp = h_new
        return torch.cat(out, dim=-1)
