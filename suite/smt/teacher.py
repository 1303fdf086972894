"""The SMT teacher: memory encoder with register tokens and a predictive-state decoder.

Encoder. The context ``x_ctx [B, Tc]`` (token ids, ``-1`` = padding: positions before the start of
reading) is embedded, given learned positions (right-aligned: the newest token always sits at slot
``Tc - 1``), and followed by ``K`` learned register tokens. A pre-norm ``nn.TransformerEncoder``
reads all ``Tc + K`` positions (padding masked out as keys); the outputs at the register positions,
projected to ``d_mem`` and RMS-normalised per token (no gain), are the memory
``m [B, K, d_mem]``, i.e. ``K * d_mem`` values with per-token RMS 1.

Decoder. A causal Transformer over ``[m_1 .. m_K, emb(x_fut_0) .. emb(x_fut_{Tf-2})]``; the outputs
at positions ``K-1 .. K+Tf-2`` predict ``y_fut = x_fut`` (the first prediction comes from the
memory alone: :meth:`Teacher.next_logits`). The embedding is shared by encoder and decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rms_normalize(z: Tensor) -> Tensor:
    """Per-token RMS normalisation over the last axis, without a learned gain."""
    return F.rms_norm(z, z.shape[-1:])


def transformer_stack(dim: int, layers: int, heads: int, ff_mult: int) -> nn.TransformerEncoder:
    """Pre-norm GELU Transformer blocks (no dropout) with a final LayerNorm."""
    layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=ff_mult * dim, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)


@dataclass(frozen=True)
class TeacherConfig:
    vocab: int
    Tc: int = 128  #: context length (sliding window) of the encoder
    Tf: int = 32  #: future tokens the decoder predicts from the memory
    K: int = 4  #: memory (register) tokens
    d_mem: int = 64  #: values per memory token; the memory has K * d_mem values
    dim: int = 128  #: Transformer width
    layers: int = 4  #: encoder blocks
    decoder_layers: int = 2  #: decoder blocks
    heads: int = 4
    ff_mult: int = 4  #: feed-forward width = ff_mult * dim


class MemoryDecoder(nn.Module):
    """Causal Transformer over ``[memory tokens; embedded prefix]``; the teacher's decoder, and the
    shape of the Transformer updater's readout (so that it can be copied from the teacher)."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.K = cfg.K
        self.from_mem = nn.Linear(cfg.d_mem, cfg.dim) if cfg.d_mem != cfg.dim else nn.Identity()
        self.pos = nn.Parameter(torch.randn(cfg.K + cfg.Tf, cfg.dim) * 0.02)
        self.blocks = transformer_stack(cfg.dim, cfg.decoder_layers, cfg.heads, cfg.ff_mult)
        self.to_logits = nn.Linear(cfg.dim, cfg.vocab)

    def hidden(self, m: Tensor, prefix_emb: Tensor | None = None) -> Tensor:
        parts = [self.from_mem(m)] + ([prefix_emb] if prefix_emb is not None and prefix_emb.shape[1] else [])
        inp = torch.cat(parts, dim=1)
        L = inp.shape[1]
        inp = inp + self.pos[:L]
        causal = nn.Transformer.generate_square_subsequent_mask(L, device=inp.device, dtype=inp.dtype)
        return self.blocks(inp, mask=causal, is_causal=True)

    def next_logits(self, m: Tensor) -> Tensor:
        """Next-token logits ``[B, V]`` from the memory alone."""
        return self.to_logits(self.hidden(m)[:, -1])


class Teacher(nn.Module):
    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ValueError(f"teacher width {cfg.dim} is not divisible by {cfg.heads} heads")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        nn.init.normal_(self.embed.weight, std=0.02)  # same scale as the positions (GPT-2 style)
        self.ctx_pos = nn.Parameter(torch.randn(cfg.Tc, cfg.dim) * 0.02)
        self.registers = nn.Parameter(torch.randn(cfg.K, cfg.dim) * 0.02)
        self.encoder = transformer_stack(cfg.dim, cfg.layers, cfg.heads, cfg.ff_mult)
        self.to_mem = nn.Linear(cfg.dim, cfg.d_mem) if cfg.d_mem != cfg.dim else nn.Identity()
        self.dec = MemoryDecoder(cfg)

    def encode(self, x_ctx: Tensor) -> Tensor:
        """Memory ``[B, K, d_mem]`` of contexts ``[B, n <= Tc]`` (``-1`` = padding, left side)."""
        B, n = x_ctx.shape
        if n > self.cfg.Tc:
            raise ValueError(f"context of {n} tokens is longer than Tc={self.cfg.Tc}")
        pad = x_ctx < 0
        tokens = self.embed(x_ctx.clamp_min(0)) + self.ctx_pos[self.cfg.Tc - n :]
        regs = self.registers.to(tokens.dtype).expand(B, -1, -1)
        inp = torch.cat([tokens, regs], dim=1)
        mask = torch.cat([pad, torch.zeros(B, self.cfg.K, dtype=torch.bool, device=pad.device)], dim=1)
        # a float mask (-inf on padding) behaves the same in training and in the inference fast path
        float_mask = torch.zeros(mask.shape, dtype=inp.dtype, device=inp.device).masked_fill(mask, float("-inf"))
        out = self.encoder(inp, src_key_padding_mask=float_mask)
        return rms_normalize(self.to_mem(out[:, n:]))

    def decode(self, m: Tensor, x_fut: Tensor) -> Tensor:
        """Logits ``[B, Tf, V]`` for ``y_fut`` (= ``x_fut``): position j is predicted from the
        memory and ``x_fut[:, :j]`` (teacher forcing; ``-1`` inputs only reach masked targets)."""
        h = self.dec.hidden(m, self.embed(x_fut[:, :-1].clamp_min(0)))
        return self.dec.to_logits(h[:, self.cfg.K - 1 :])

    def next_logits(self, m: Tensor) -> Tensor:
        """The teacher's next-token logits ``[B, V]`` from the memory alone ("decoder0")."""
        return self.dec.next_logits(m)
