"""Input encoders shared by the models: identity for real inputs, an embedding for tokens."""

from __future__ import annotations

from torch import Tensor, nn

from suite.contracts import IOSpec


class InputEncoder(nn.Module):
    """Maps raw inputs to real features: ``[B,T,in]`` passes through, tokens ``[B,T]`` embed."""

    def __init__(self, spec: IOSpec, embed_dim: int) -> None:
        super().__init__()
        self.spec = spec
        self.embedding = nn.Embedding(spec.size, embed_dim) if spec.is_tokens else None
        self.features = embed_dim if spec.is_tokens else spec.size

    def forward(self, x: Tensor) -> Tensor:
        return self.embedding(x) if self.embedding is not None else x
