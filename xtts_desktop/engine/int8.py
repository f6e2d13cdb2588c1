"""Int8 weight-only linear layers for the GPT on CPUs (one scale per output channel)."""

from __future__ import annotations

import torch


class Int8WeightLinear(torch.nn.Module):
    """y = x W^T + b with W stored as int8 and per-row scales; x, b and y stay fp32."""

    def __init__(
        self, weight_q: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.register_buffer("weight_q", weight_q)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", bias)
        self.out_features, self.in_features = weight_q.shape

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None) -> Int8WeightLinear:
        """weight: [out, in] float."""
        weight = weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        weight_q = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
        return cls(
            weight_q.contiguous(),
            scales.to(torch.bfloat16),
            None if bias is None else bias.detach().float().clone(),
        )

    @classmethod
    def from_conv1d(cls, conv: torch.nn.Module) -> Int8WeightLinear:
        """GPT-2's Conv1D computes x @ W + b with W as [in, out]."""
        return cls.from_weight(conv.weight.t(), conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch._weight_int8pack_mm(
            x.reshape(-1, shape[-1]).to(torch.bfloat16), self.weight_q, self.scales
        )
        y = y.float()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)
