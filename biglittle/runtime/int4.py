"""4-bit weights whose scoring is batch-invariant: the GGUF's own Q4_K integers where it has them.

A decoding step on a CPU is bound by reading weights, so 4-bit weights read half the bytes of int8. `Int4Linear`
runs torch's own int4 CPU kernel (`aten._weight_int4pack_mm_for_cpu`, the one torchao's CPU int4 layout calls too):
weights of 4 bits with a scale and an offset per group of 32 along the input, activations in bf16. The kernel
computes every output row alone: for each row it sums the products in fp32 over the whole input in one fixed order,
with the dequantized weight the same for every row, and rounds the sum to bf16. Neither the number of rows nor their
blocking (4 rows per tile) changes a row's result, so a token scores alike alone or with others (tested here on
each machine: cpu.py). With fp32 activations the same kernel has no vectorized path on x86 and is ~100x slower.

Where the model came from a GGUF file, its Q4_K matrices are taken as they are (gguf_weights.py): the published
integers, with each group's scale and offset rounded to bf16 (the kernel's dtype). Every other matrix (Q6_K, Q5_0,
Q8_0 in a Q4_K_M file, or any model without a GGUF) is quantized from its fp32 weights: 4-bit per group of 32
(min/max), except that matrices the GGUF holds in more bits become what `WIDER_LAYERS` says (int8 as
`--precision int8` makes them: fewer roundings; not yet measured against 4-bit), and a layer whose input size is
not a multiple of 32 becomes int8 (the kernel's smallest group is 32).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from ..errors import BigLittleError
from .cpu import capabilities
from .gguf_weights import GROUP, Q4Weights, read_gguf_weights
from .quantize import (
    Int8Linear,
    Int8Quantizer,
    _linear_layers,
    fuse_shared_inputs,
    int8_problem,
    use_rowwise_attention,
)

ACTIVATIONS = torch.bfloat16  # the kernel's vectorized dtype on x86 (AVX2, AVX-512) and the one it is tested in
ROW_MULTIPLE = 16  # the kernel packs output channels in multiples of 16: others are padded with zero rows


class Int4Linear(nn.Module):
    """y = x W^T + b, W = (q - 8) * scale + zero per group of 32 inputs, q in 0..15, x rounded to bf16 per element.

    Built from GGUF blocks (`from_q4`) or from float weights (`from_weight`). Rows never influence each other.
    """

    precision = "int4"  # what precision_of reports for a model with such layers

    def __init__(self, integers: torch.Tensor, scales_and_zeros: torch.Tensor, bias: torch.Tensor | None):
        """integers [N, K] in 0..15; scales_and_zeros [K / 32, N, 2] (the kernel's layout); bias [N] or None."""
        super().__init__()
        self.out_features, self.in_features = integers.shape
        padding = -self.out_features % ROW_MULTIPLE
        if padding:  # zero rows: q = 8 with scale and zero 0
            integers = torch.cat([integers, integers.new_full((padding, self.in_features), 8)])
            zeros = scales_and_zeros.new_zeros(len(scales_and_zeros), padding, 2)
            scales_and_zeros = torch.cat([scales_and_zeros, zeros], dim=1)
        self._packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(integers.to(torch.int32).contiguous(), 1)
        self.scales_and_zeros = scales_and_zeros.to(ACTIVATIONS).contiguous()
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(), requires_grad=False)

    @classmethod
    def from_q4(cls, weights: Q4Weights, bias: torch.Tensor | None) -> Int4Linear:
        """From a GGUF's Q4_K matrix, w = scale * q - min: the same integers; scale and zero = 8 * scale - min, bf16."""
        scale = weights.scales.to(ACTIVATIONS).float()
        zero = 8 * scale - weights.mins  # from the rounded scale, so that the two roundings do not add up
        return cls(weights.integers, torch.stack([scale, zero], dim=-1).transpose(0, 1), bias)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None) -> Int4Linear:
        """Group-wise 4-bit of float weights [N, K]: per group of 32, 16 even steps from its least to its largest."""
        rows, columns = weight.shape
        groups = weight.detach().float().reshape(rows, columns // GROUP, GROUP)
        low, high = groups.amin(dim=-1), groups.amax(dim=-1)
        scale = ((high - low) / 15).to(ACTIVATIONS).float()
        zero = (low + 8 * scale).to(ACTIVATIONS).float()
        steps = torch.where(scale > 0, scale, 1.0).unsqueeze(-1)  # a constant group: every q is 8, w = zero
        integers = torch.round((groups - zero.unsqueeze(-1)) / steps + 8).clamp_(0, 15).to(torch.uint8)
        return cls(integers.reshape(rows, columns), torch.stack([scale, zero], dim=-1).transpose(0, 1), bias)

    @classmethod
    def from_module(cls, layer: nn.Module, q4: Q4Weights | None = None) -> Int4Linear:
        """From an nn.Linear or a transformers Conv1D (weight stored transposed); `q4`: its GGUF blocks, if any."""
        if q4 is not None:
            return cls.from_q4(q4, layer.bias)
        return cls.from_weight(layer.weight.t() if isinstance(layer, Conv1D) else layer.weight, layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(ACTIVATIONS).contiguous()
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self._packed, GROUP, self.scales_and_zeros)
        out = out[:, : self.out_features].float()
        if self.bias is not None:
            out += self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def integers(self) -> torch.Tensor:
        """q [N, K], read back through the kernel itself (its packed layout differs between CPUs): an identity input
        with scale 1 and zero 8 gives (q - 8) + 8 = q, exact in bf16. A one-off: it costs K passes of the layer."""
        unit = torch.tensor([1.0, 8.0], dtype=ACTIVATIONS).expand(*self.scales_and_zeros.shape).contiguous()
        identity = torch.eye(self.in_features, dtype=ACTIVATIONS)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(identity, self._packed, GROUP, unit).t()[: self.out_features]

    def rows(self, token_ids: torch.Tensor) -> Int4Linear:
        """A layer of only these output rows, with the very same integers, scales and zeros."""
        bias = None if self.bias is None else self.bias[token_ids]
        return Int4Linear(self.integers()[token_ids].to(torch.uint8), self.scales_and_zeros[:, token_ids], bias)

    @property
    def weight(self) -> torch.Tensor:
        """The weight this layer multiplies by, dequantized (a costly copy: for code that reads rows or the shape)."""
        scale, zero = self.scales_and_zeros[:, : self.out_features].float().permute(2, 1, 0)
        grouped = self.integers().float().reshape(self.out_features, -1, GROUP) - 8
        return (grouped * scale.unsqueeze(-1) + zero.unsqueeze(-1)).reshape(self.out_features, self.in_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int4DraftLinear(Int4Linear):
    """A little model's 4-bit layer that hands passes over more than `most_int4_rows` rows to an int8 copy of its
    weights (oneDNN's product where it is exact here, cpu.py). torch's int4 kernel works through rows four at a time,
    each block costing most of a step (the 0.5B: 16 rows 3.6 steps, int8 1.9; 4 rows 1.3 steps, int8 1.3 of a 37%
    dearer step), and such passes (its prompt, a catch-up over accepted lookups) are few. The two copies round
    differently; a draft's numbers change how often it is right, never the output (exactness is the big model's)."""

    most_int4_rows = 4
    over_many_rows = "int8"  # what draft_precision names it by

    @classmethod
    def for_draft(
        cls, layer: nn.Module, q4: Q4Weights | None = None, int8_copy: nn.Module | None = None
    ) -> Int4DraftLinear:
        """`int8_copy`: the layer's int8 copy, if made already (a part of a FusedInt8: Int8Quantizer)."""
        made = cls.from_module(layer, q4)
        # A tuple keeps it out of the submodules, which count what a step reads (weight_bytes, precision_of).
        made._int8: tuple[nn.Module] = (int8_copy if int8_copy is not None else Int8Linear.from_module(layer),)
        return made

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() // self.in_features > self.most_int4_rows:
            return self._int8[0](x)
        return super().forward(x)


def int4_problem(model: PreTrainedModel) -> str | None:
    """Why `model` cannot be made int4 here, or None when it can (its other layers may be int8: int8's needs too)."""
    problem = int8_problem(model)
    if problem:
        return problem.replace("int8", "int4", 1)
    if not capabilities()["int4"]:
        return "torch's int4 kernel does not run correctly on this CPU (tried in a child process); choose int8"
    return None


# What a matrix that the GGUF holds in more than 4 bits (Q6_K, Q5_0, Q8_0 in a Q4_K_M file) becomes: "int8" (per-channel
# int8 of its fp32 weights) or "int4" (group-wise 4-bit of them: a second rounding, to fewer bits than published).
# Which is better on the default pair is not measured yet (compare_precisions.py, docs/precision.md).
WIDER_LAYERS = "int8"


@dataclass
class Int4Report:
    """Which layers became what: the GGUF's own 4-bit blocks, 4-bit from fp32 weights, int8."""

    from_gguf: list[str] = field(default_factory=list)
    from_fp32: list[str] = field(default_factory=list)
    int8: list[str] = field(default_factory=list)


def quantize_model_int4(
    model: PreTrainedModel,
    gguf: str | Path | None = None,
    wider_layers: str = WIDER_LAYERS,
    draft: bool = False,
    keep_blocks: bool = False,
) -> Int4Report:
    """Make `model` (fp32, on the CPU) a 4-bit model with batch-invariant scoring, in place.

    With `gguf` (the file the model was loaded or converted from), each of its Q4_K matrices that matches the model's
    weight bit for bit when dequantized is taken as it is, and the matrices it holds in more bits become
    `wider_layers` ("int8" or "int4"). Every other layer becomes group-wise 4-bit from its fp32 weights, except
    those whose input size is not a multiple of 32: int8. Attention becomes row-wise, as at int8. The output layer,
    if tied to the input embeddings, gets its own copy; the embeddings stay fp32. A `draft`'s 4-bit layers pass
    many rows to int8 (Int4DraftLinear), its output layer's too (a tree level asks for many rows' logits).
    `keep_blocks`: keep the GGUF's decoded blocks beside it (read_gguf_weights).
    """
    problem = int4_problem(model)
    if problem:
        raise BigLittleError(problem)
    names = [name for name, _ in _linear_layers(model)]  # names only: each fp32 weight is freed once replaced
    weight_names = {name + ".weight" for name in names}
    stored = read_gguf_weights(gguf, model, weight_names, keep=keep_blocks) if gguf is not None else None
    blocks = _matching_blocks(model, stored.q4) if stored is not None else {}
    wider = set(stored.other_types) if stored is not None else set()
    report = Int4Report()
    int8_copies = Int8Quantizer(model) if draft else None  # q, k, v (gate, up) copies share one product, as at int8
    for name in tqdm(names, desc="int4", unit="layer", leave=False, disable=None):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = getattr(parent, child)
        q4 = blocks.get(name + ".weight")
        in_features = layer.weight.shape[0 if isinstance(layer, Conv1D) else 1]
        if q4 is None and (in_features % GROUP or (name + ".weight" in wider and wider_layers == "int8")):
            report.int8.append(name)
            setattr(parent, child, Int8Linear.from_module(layer))
            continue
        (report.from_gguf if q4 is not None else report.from_fp32).append(name)
        if int8_copies is not None:
            made = Int4DraftLinear.for_draft(layer, q4, int8_copies.layer(name))
        else:
            made = Int4Linear.from_module(layer, q4)
        setattr(parent, child, made)
    fuse_shared_inputs(model)  # int8 projections of one input (the wider ones) share one product, as at int8
    use_rowwise_attention(model)
    return report


def _matching_blocks(model: nn.Module, blocks: Mapping[str, Q4Weights]) -> dict[str, Q4Weights]:
    """The blocks that are the model's own weights: a GGUF of another model, or a name mapped wrongly, is never used."""
    parameters = dict(model.named_parameters())
    matching = {}
    for name, weights in blocks.items():
        if torch.equal(weights.dequantize(), parameters[name].detach().float()):
            matching[name] = weights
        else:
            warnings.warn(
                f"{name}: the GGUF's Q4_K blocks differ from the model's weights; quantized from fp32", stacklevel=3
            )
    return matching
