"""int8 models whose scoring is batch-invariant, and the choice of the fastest precision.

Exact speculative decoding at temperature 0 returns `ar`'s tokens only if the target gives a
token the same logits whether it is scored alone or with the draft's tokens in one pass. torch's
dynamic int8 quantization breaks that: one activation scale per tensor makes every row's
rounding depend on the other rows. Here every piece of a forward pass treats each token row on
its own:

- `Int8Linear`: int8 weights with one scale per output channel, int8 activations with one scale
  per token row (7-bit on CPUs without VNNI), an integer matrix product (fbgemm for one row, oneDNN
  for more where it gives the same bits; int32 sums are exact, so blocking and the number of rows
  cannot change them), then the two scales multiplied back in.
- `rowwise_attention`: each query row attends to exactly the keys it may see, with ops whose
  shapes do not depend on how many other rows are in the pass.

Norms, rotary embeddings and activations are elementwise or reduce within one row already.
"""

from __future__ import annotations

import contextvars
import copy
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.pytorch_utils import Conv1D

from ..errors import BigLittleError
from .cpu import capabilities

ROWWISE_ATTENTION = "biglittle_rowwise"


def activation_range() -> tuple[int, int]:
    """(largest activation, zero point) of int8 activations on this CPU.

    With VNNI, fbgemm sums u8 x s8 products exactly in 32 bits: 8-bit activations (-127..127 around
    zero point 128). Without, it adds pairs of products in 16 bits, which saturates for 8-bit
    activations: 7-bit ones (-63..63 around 64) fit. 8 bits halve the rounding error (measured on
    Qwen2.5-0.5B: top-1 agreement with fp32 0.945 against 0.887 with 7 bits). Which holds is tried, not
    read from the CPU's flags (cpu.py): a flag can be reported where the instruction does not run.
    """
    return (127, 128) if capabilities()["int8_8bit"] else (63, 64)


def onednn_exact() -> bool:
    """Whether oneDNN's int8 product gives fbgemm's results here (the probe's verdict, cpu.py)."""
    return capabilities()["int8_onednn"]


class Int8Linear(nn.Module):
    """y = x W^T + b, W in int8 per output channel, x in int8 per row: rows never influence each other.

    Two kernels compute the product, fbgemm's and, where the probe found it exact, oneDNN's: both return each output's
    exact int32 sum times the weight's scale, rounded once, so they give the same bits (tested on each machine). They
    differ in cost: fbgemm's is the faster on one row (a decoding step), oneDNN's costs about as much on sixteen rows as
    on one (a verification pass; measured on an Intel Xeon with AMX, docs/bench/int8-kernels). So passes of
    `onednn_from_rows` rows or more run on oneDNN, at the price of a second copy of the weights in its layout.
    """

    precision = "int8"  # what precision_of reports for a model with such layers
    onednn_from_rows = 2

    def __init__(self, integers: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None):
        """From int8 weights [out, in] and their scales [out] as they are (no second rounding)."""
        super().__init__()
        self.out_features, self.in_features = integers.shape
        self.register_buffer("scales", scales.float().contiguous())
        self.activation_max, self.zero_point = activation_range()
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(), requires_grad=False)
        integers = integers.to(torch.int8).contiguous()
        with warnings.catch_warnings():  # torch flags quantized tensors as deprecated; fbgemm still takes only them
            warnings.simplefilter("ignore", UserWarning)
            quantized = torch._make_per_channel_quantized_tensor(
                integers, self.scales.double(), torch.zeros(self.out_features, dtype=torch.long), 0
            )
        self._packed = torch.ops.quantized.linear_prepack(quantized, None)  # fbgemm's layout; bias added below
        self._onednn = torch.ops.onednn.qlinear_prepack(integers, None) if onednn_exact() else None
        self._zero_points = torch.zeros(self.out_features, dtype=torch.long)

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None) -> Int8Linear:
        """From a float weight [out, in]: one scale per output channel, its largest |w| mapped to 127."""
        weight = weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            quantized = torch.quantize_per_channel(
                weight, scale.double(), torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8
            )
        return cls(quantized.int_repr(), quantized.q_per_channel_scales().float(), bias)

    @classmethod
    def from_module(cls, layer: nn.Module) -> Int8Linear:
        """From an nn.Linear, or a transformers Conv1D (GPT-2's layers: the weight stored transposed)."""
        weight = layer.weight.t() if isinstance(layer, Conv1D) else layer.weight
        return cls.from_float(weight, layer.bias)

    def integers(self) -> torch.Tensor:
        """The int8 weights [out, in] (a copy)."""
        quantized, _ = torch.ops.quantized.linear_unpack(self._packed)
        return quantized.int_repr()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        row_scale = torch.linalg.vector_norm(rows, float("inf"), dim=1, keepdim=True)  # max |x| per row: exact
        row_scale = row_scale.clamp_min_(1e-12).div_(self.activation_max)
        # Rounded here, so that the kernel's own quantization (scale 1) only adds the zero point.
        integers = torch.round(rows / row_scale)
        if self._onednn is not None and len(rows) >= self.onednn_from_rows:
            out = self._onednn_product(integers)
        else:
            out = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
                integers, 1.0, self.zero_point, self._packed
            )
        out = out.mul_(row_scale) if self.bias is None else torch.addcmul(self.bias, out, row_scale)
        return out.reshape(*x.shape[:-1], self.out_features)

    def _onednn_product(self, integers: torch.Tensor) -> torch.Tensor:
        activations = integers.add_(self.zero_point).to(torch.uint8)
        return torch.ops.onednn.qlinear_pointwise(
            activations, 1.0, self.zero_point, self._onednn, self.scales, self._zero_points, None, 1.0, 0,
            torch.float32, "none", [], "",
        )  # fmt: skip

    @property
    def weight(self) -> torch.Tensor:
        """The weight this layer multiplies by, dequantized (a copy: for code that reads rows or the shape)."""
        return self.integers().float() * self.scales[:, None]

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"onednn={self._onednn is not None}"
        )


_PREFILL_UNTIL: contextvars.ContextVar[int] = contextvars.ContextVar("biglittle_prefill_until", default=0)


@contextmanager
def prefilling(positions: int) -> Iterator[None]:
    """While a runner reads a prompt into an empty cache: its first `positions` tokens get no logits, and every
    method reads them alike, in one pass over the same tokens, so their attention may batch them (rowwise_attention)."""
    token = _PREFILL_UNTIL.set(positions)
    try:
        yield
    finally:
        _PREFILL_UNTIL.reset(token)


def rowwise_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    **kwargs,
):
    """Attention computed one query row at a time over the keys that row may see.

    A row scored together with later rows would otherwise reduce over extra masked keys, and
    sums over a longer vector can round differently even when the extra terms are zeros. A row of
    a tree of proposals sees the text, its ancestors and itself, with other branches in between:
    those keys are gathered, so the row reduces over the very keys, in the same order, that it
    would see as the last token of a chain. Each row is one fused call over its keys (`_attend_one_row`),
    the same call whether it is scored alone or not.

    The exception: the prompt's first positions read into an empty cache (`prefilling`), which every
    method reads in one pass of the same shape over the same tokens, are attended in one batched
    causal call; the rows after them, whose logits are used, are still scored one by one.
    query [batch, heads, rows, dim]; key and value [batch, kv_heads, keys, dim].
    Returns ([batch, rows, heads, dim], None) as transformers' attention functions do.
    """
    rows = query.shape[2]
    batched = min(rows, _PREFILL_UNTIL.get()) if key.shape[2] == rows else 0  # a prompt read into an empty cache
    outputs = []
    if batched:
        outputs.append(
            F.scaled_dot_product_attention(
                query[:, :, :batched],
                key[:, :, :batched],
                value[:, :, :batched],
                is_causal=True,
                scale=scaling,
                enable_gqa=key.shape[1] != query.shape[1],
            )
        )
    visible_keys = _visible_keys(module, attention_mask, rows, key.shape[2])
    for row in range(batched, rows):
        visible = visible_keys[row]
        if isinstance(visible, int):
            row_keys, row_values = key[:, :, :visible], value[:, :, :visible]
        else:
            row_keys, row_values = key.index_select(2, visible), value.index_select(2, visible)
        outputs.append(_attend_one_row(query[:, :, row : row + 1], row_keys, row_values, scaling))
    return torch.cat(outputs, dim=2).transpose(1, 2), None


def _attend_one_row(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scaling: float | None):
    """One query row [batch, heads, 1, dim] over its keys and values [batch, kv_heads, keys, dim].

    The query heads that share a key-value head go as the rows of one call: the same result for a row whichever pass it
    is in (the call's shape depends on that row alone), at half the cost of enable_gqa's one-row call.
    """
    batch, heads, _, dim = query.shape
    grouped = query.reshape(batch, keys.shape[1], heads // keys.shape[1], dim)  # query head h reads kv head h // group
    return F.scaled_dot_product_attention(grouped, keys, values, scale=scaling).reshape(batch, heads, 1, dim)


# The last mask read and what it lets each row see: every layer of a pass gets the same mask tensor, and reading it
# costs ~0.1 ms a layer (half of a one-token attention step). Held weakly: a new mask tensor is read afresh
# (transformers builds one per pass and never changes it in place).
_last_mask_read: tuple[weakref.ref, tuple[int, int], list[int | torch.Tensor]] | None = None


def _visible_keys(
    module: nn.Module, attention_mask: torch.Tensor | None, rows: int, keys: int
) -> list[int | torch.Tensor]:
    """For each query row, the keys it may see: how many leading keys (up to its last unmasked one), or, where
    masked keys come before its last unmasked one (a tree of proposals), the indices of the unmasked keys."""
    global _last_mask_read
    if attention_mask is None:
        causal = getattr(module, "is_causal", True)
        return [keys - rows + row + 1 if causal else keys for row in range(rows)]
    read = (rows, keys)
    last = _last_mask_read
    if last is not None and last[0]() is attention_mask and last[1] == read:
        return last[2]
    visible = _read_mask(attention_mask, rows, keys)
    _last_mask_read = (weakref.ref(attention_mask), read, visible)
    return visible


def _read_mask(attention_mask: torch.Tensor, rows: int, keys: int) -> list[int | torch.Tensor]:
    allowed = (attention_mask[..., :keys] > torch.finfo(attention_mask.dtype).min).flatten(0, 1).any(dim=0)
    ends = (keys - allowed.flip(-1).int().argmax(dim=-1)).tolist()  # one past each row's last unmasked key
    leading = allowed.int().cumprod(dim=-1).sum(dim=-1).tolist()  # the unbroken run of unmasked keys from the first
    return [end if end == run else allowed[row].nonzero()[:, 0] for row, (end, run) in enumerate(zip(ends, leading))]


def use_rowwise_attention(model: PreTrainedModel) -> None:
    """Make `model` attend with `rowwise_attention` (registered with transformers on first use)."""
    ALL_ATTENTION_FUNCTIONS.register(ROWWISE_ATTENTION, rowwise_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ROWWISE_ATTENTION, eager_mask)  # always a full additive mask
    model.set_attn_implementation(ROWWISE_ATTENTION)


def int8_problem(model: PreTrainedModel) -> str | None:
    """Why `model` cannot be made int8 here, or None when it can."""
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return "int8 needs torch's fbgemm kernels (an x86 CPU); choose fp32 or bf16"
    if model.device.type != "cpu":
        return f"int8 runs on the CPU only (the model is on {model.device}); on a GPU choose bf16 or fp16"
    if not capabilities()["int8"]:
        return "int8 kernels do not run correctly on this CPU (tried in a child process); choose fp32 or bf16"
    if not model._can_set_attn_implementation():
        return (
            f"int8 needs a model whose attention goes through transformers' AttentionInterface "
            f"(Llama, Qwen2, GPT-2, ...); {type(model).__name__} does not: choose fp32 or bf16"
        )
    return None


def quantize_model(model: PreTrainedModel) -> PreTrainedModel:
    """Make `model` (fp32, on the CPU) an int8 model with batch-invariant scoring, in place.

    Every nn.Linear (and GPT-2's Conv1D) becomes an Int8Linear, the output layer included, and projections that
    share an input parts of one (Int8Quantizer); an output layer tied to the input embeddings gets its own int8
    copy, so token lookups keep the fp32 embeddings. Attention becomes `rowwise_attention`.
    """
    problem = int8_problem(model)
    if problem:
        raise BigLittleError(problem)
    names = [name for name, _ in _linear_layers(model)]  # names only: each fp32 weight is freed once replaced
    int8 = Int8Quantizer(model)
    units = int8.units(names)
    with ThreadPoolExecutor(2) as pool:  # fbgemm packs a matrix on one core: two at a time
        made = tqdm(pool.map(int8.make, units), total=len(units), desc="int8", unit="layer", leave=False, disable=None)
        for unit, layers in zip(units, made):
            for name, layer in zip(unit, layers):
                parent_name, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent_name), child, layer)
    use_rowwise_attention(model)
    return model


# Projections that read the same input in Llama / Qwen2 / Mistral layers: one int8 product serves each group.
SHARED_INPUTS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class FusedInt8(nn.Module):
    """One Int8Linear for several projections of the same input (q, k, v; gate, up): the input is quantized once
    and multiplied once. Each projection's output is bit for bit what its own Int8Linear gave (the same row scales,
    the same integers, exact int32 sums), so fusing changes no logit."""

    def __init__(self, product: Int8Linear, sizes: list[int]):
        super().__init__()
        self.product, self.sizes = product, sizes
        self._last: tuple[torch.Tensor | None, tuple[torch.Tensor, ...]] = (None, ())

    @classmethod
    def of_int8(cls, layers: list[Int8Linear]) -> FusedInt8:
        """From int8 layers, their integers and scales as they are."""
        integers = torch.cat([layer.integers() for layer in layers])
        product = Int8Linear(integers, torch.cat([layer.scales for layer in layers]), _joined_bias(layers))
        return cls(product, [layer.out_features for layer in layers])

    @classmethod
    def of_float(cls, layers: list[nn.Linear]) -> FusedInt8:
        """From float layers, quantized and packed once (not each alone, then unpacked and packed again: that
        doubled the time int8 took to load). Scales are per output channel, so the integers are each layer's own."""
        product = Int8Linear.from_float(torch.cat([layer.weight for layer in layers]), _joined_bias(layers))
        return cls(product, [layer.out_features for layer in layers])

    def parts(self) -> list[FusedPart]:
        """One FusedPart per projection, in order."""
        return [FusedPart(self, index) for index in range(len(self.sizes))]

    def output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if self._last[0] is not x:  # the first projection of this input computes all of them
            self._last = (x, self.product(x).split(self.sizes, dim=-1))
        return self._last[1][index]


def _joined_bias(layers: list) -> torch.Tensor | None:
    if all(layer.bias is None for layer in layers):
        return None
    return torch.cat([layer.bias if layer.bias is not None else torch.zeros(layer.out_features) for layer in layers])


class FusedPart(nn.Module):
    """One projection of a FusedInt8, where the model calls it."""

    def __init__(self, fused: FusedInt8, index: int):
        super().__init__()
        self.fused, self.index = fused, index
        self.in_features, self.out_features = fused.product.in_features, fused.sizes[index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused.output(self.index, x)

    @property
    def weight(self) -> torch.Tensor:
        start = sum(self.fused.sizes[: self.index])
        return self.fused.product.weight[start : start + self.out_features]


def shared_input_groups(model: nn.Module, kind: type) -> Iterator[tuple[str, nn.Module, tuple[str, ...], list]]:
    """(module name, module, names, layers) for every group of SHARED_INPUTS projections of one module, all `kind`."""
    for module_name, module in list(model.named_modules()):
        for names in SHARED_INPUTS:
            layers = [getattr(module, name, None) for name in names]
            if all(isinstance(layer, kind) for layer in layers):
                yield module_name, module, names, layers


def fuse_shared_inputs(model: nn.Module) -> None:
    """Replace every group of SHARED_INPUTS int8 projections of one module by parts of one FusedInt8."""
    for _, module, names, layers in shared_input_groups(model, Int8Linear):
        for name, part in zip(names, FusedInt8.of_int8(layers).parts()):
            setattr(module, name, part)


class Int8Quantizer:
    """The int8 layers for the float layers of `model`: a part of one FusedInt8 for projections that share an input
    (SHARED_INPUTS), their group quantized as one unit while all are still float. By unit (`units`, `make`: units can
    be made in parallel), or by name (`layer`: the group is made when its first member is asked for)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.groups = {
            f"{module_name}.{name}".lstrip("."): [f"{module_name}.{member}".lstrip(".") for member in names]
            for module_name, _, names, _ in shared_input_groups(model, nn.Linear)
            for name in names
        }
        self.made: dict[str, nn.Module] = {}

    def units(self, names: list[str]) -> list[tuple[str, ...]]:
        """`names` in the units quantized together: a group of projections once, where its first member is."""
        units = [tuple(self.groups.get(name, [name])) for name in names]
        return list(dict.fromkeys(units))

    def make(self, unit: tuple[str, ...]) -> list[nn.Module]:
        """The int8 layers of one unit (`units`), in its order."""
        if unit[0] not in self.groups:
            return [Int8Linear.from_module(self.model.get_submodule(unit[0]))]
        return FusedInt8.of_float([self.model.get_submodule(member) for member in unit]).parts()

    def layer(self, name: str) -> nn.Module:
        if name not in self.made:
            unit = tuple(self.groups.get(name, [name]))
            self.made.update(zip(unit, self.make(unit)))
        return self.made.pop(name)


def _linear_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules() if isinstance(module, (nn.Linear, Conv1D))]


def fastest_precision(
    model: PreTrainedModel, repeats: int = 5, also: Mapping[str, Callable[[nn.Module], nn.Module]] | None = None
) -> str:
    """The precision that runs `model` fastest here: a measurement on a CPU, bf16 / fp16 on a GPU.

    On a CPU it times the model's largest hidden layer (the output layer aside) on 1 row (a
    plain decoding step) plus 4 rows (a verification pass) in fp32, bf16 and, where the model
    allows it, int8: which kernel wins depends on the CPU's instruction set. `also`: more
    candidates, by name, each made from that layer.
    """
    if model.device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if model.device.type != "cpu":
        return "fp32"
    output_layer = model.get_output_embeddings()
    layer = max(
        (module for _, module in _linear_layers(model) if module is not output_layer),
        key=lambda module: module.weight.numel(),
    )
    candidates = {"fp32": (layer, torch.float32)}
    if capabilities()["bf16"]:  # tried in a child process: a CPU may report instructions that fault here
        candidates["bf16"] = (copy.deepcopy(layer).to(torch.bfloat16), torch.bfloat16)
    if int8_problem(model) is None:
        candidates["int8"] = (Int8Linear.from_module(layer), torch.float32)
    for name, make in (also or {}).items():
        candidates[name] = (make(layer), torch.float32)
    in_features = layer.weight.shape[0 if isinstance(layer, Conv1D) else 1]
    seconds = {name: _time_rows(module, in_features, dtype, repeats) for name, (module, dtype) in candidates.items()}
    return min(seconds, key=seconds.get)


@torch.inference_mode()
def _time_rows(layer: nn.Module, in_features: int, dtype: torch.dtype, repeats: int) -> float:
    """Fastest of `repeats` runs of 1 row plus fastest of 4 rows (the minimum resists other load)."""
    total = 0.0
    for rows in (1, 4):
        x = torch.randn(rows, in_features, generator=torch.Generator().manual_seed(0)).to(dtype)
        layer(x)  # warm-up: first calls pack weights and allocate
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            layer(x)
            times.append(time.perf_counter() - started)
        total += min(times)
    return total


def weight_bytes(model: nn.Module) -> int:
    """Bytes of weights one forward pass reads whatever its number of tokens: every linear layer, the output layer
    included (an embedding lookup reads a row per token: left out)."""
    total = 0
    for module in model.modules():
        if isinstance(module, Int8Linear):
            total += module.in_features * module.out_features  # int8; per-channel scales are negligible
        elif getattr(module, "precision", None) == "int4":  # 4-bit integers, a bf16 scale and offset per 32
            total += module._packed.nbytes + module.scales_and_zeros.nbytes
        elif isinstance(module, (nn.Linear, Conv1D)):
            total += module.weight.numel() * module.weight.element_size()
    return total


def precision_of(model: nn.Module) -> str:
    """'int4' or 'int8' for a quantized model (int4 where any layer is: its other layers may be int8), else its
    parameters' dtype (what tells cost profiles apart)."""
    found = _layer_precisions(model)
    return next((name for name in ("int4", "int8") if name in found), str(next(model.parameters()).dtype))


def _layer_precisions(model: nn.Module) -> set[str | None]:
    """The precisions its quantized layers declare (None for every other module)."""
    return {getattr(module, "precision", None) for module in model.modules()}


def draft_precision(model: nn.Module) -> str:
    """precision_of, telling a little model wholly in 4 bits (load_draft's int4: "int4, every matrix", with the
    precision its layers hand passes over many rows to) from one whose wider matrices are int8 (profiles kept before
    it had its own name)."""
    found = _layer_precisions(model)
    if not (found >= {"int4"} and "int8" not in found):
        return precision_of(model)
    over_many_rows = sorted({module.over_many_rows for module in model.modules() if hasattr(module, "over_many_rows")})
    return ", ".join(["int4, every matrix", *(f"{name} over many rows" for name in over_many_rows)])


def scoring_gap(runner, context: list[int], new: list[int]) -> float:
    """Largest |logit difference| between scoring `new` in one pass and one token per pass after `context`.

    0.0 means bit-identical (batch-invariant): what greedy speculative == greedy ar relies on.
    `runner` is a biglittle.lm.ModelRunner.
    """
    tokens = runner.start(context)
    runner.forward(tokens, 1)
    together = runner.forward(tokens + new, len(new))
    runner.crop(len(tokens))
    alone = torch.cat([runner.forward(tokens + new[: i + 1], 1) for i in range(len(new))])
    return 0.0 if torch.equal(together, alone) else float((together - alone).abs().max())
