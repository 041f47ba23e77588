"""A GGUF file's own 4-bit weights (Q4_K blocks), as integers and per-group scales, by the model's parameter names.

llama.cpp's Q4_K (block_q4_K) stores 256 weights of a row in 144 bytes: an fp16 scale d and an fp16 dmin, twelve
bytes packing eight 6-bit scales sc_j and eight 6-bit mins m_j, and 128 bytes of 4-bit integers q. Sub-block j
holds 32 consecutive weights, w = (d * sc_j) * q - (dmin * m_j): a 4-bit integer with one scale and one offset per
group of 32 weights along the row, which is what torch's int4 kernels take (int4.py). Reading these blocks keeps the
published integers; dequantizing to fp32 and quantizing again would round twice.

A Q4_K_M file mixes types: Q6_K, Q5_0 or Q8_0 tensors (more bits where the format spends them; rows whose length is
not a multiple of 256) are not 4-bit, and are left to the caller.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..files import read_json
from .fetch import MARKER

BLOCK_BYTES, BLOCK_WEIGHTS, GROUP = 144, 256, 32  # one Q4_K block; its sub-blocks (torch's int4 groups)


@dataclass
class Q4Weights:
    """One weight matrix [N, K] from Q4_K blocks: w = scales * integers - mins, per group of GROUP weights."""

    integers: torch.Tensor  # uint8 [N, K], 0..15
    scales: torch.Tensor  # float32 [N, K / GROUP]: d * sc_j
    mins: torch.Tensor  # float32 [N, K / GROUP]: dmin * m_j

    def dequantize(self) -> torch.Tensor:
        """The fp32 weights, computed as the gguf package's dequantization computes them (bit for bit)."""
        rows, columns = self.integers.shape
        grouped = self.integers.reshape(rows, -1, GROUP).float()
        return (self.scales.unsqueeze(-1) * grouped - self.mins.unsqueeze(-1)).reshape(rows, columns)


def decode_q4_k(blocks: np.ndarray) -> Q4Weights:
    """Q4_K rows (uint8 [N, K / 256 * 144], as gguf's GGUFReader gives a tensor's data) -> integers and scales."""
    rows = blocks.shape[0]
    blocks = np.ascontiguousarray(blocks).reshape(-1, BLOCK_BYTES)
    d = blocks[:, 0:2].view(np.float16).astype(np.float32)
    dmin = blocks[:, 2:4].view(np.float16).astype(np.float32)
    packed = blocks[:, 4:16].reshape(-1, 3, 4)  # bytes 0-3: low 6 bits of sc 0-3, 4-7: of m 0-3, 8-11: the rest
    low, high, rest = packed[:, 0], packed[:, 1], packed[:, 2]
    sc = np.concatenate([low & 0x3F, (rest & 0x0F) | ((low >> 2) & 0x30)], axis=-1)
    m = np.concatenate([high & 0x3F, (rest >> 4) | ((high >> 2) & 0x30)], axis=-1)
    # 128 bytes: four runs of 32; run r holds sub-block 2r in its low nibbles and 2r + 1 in its high ones.
    quants = blocks[:, 16:].reshape(-1, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    integers = (quants & 0x0F).reshape(rows, -1)
    return Q4Weights(
        torch.from_numpy(integers),
        torch.from_numpy((d * sc.astype(np.float32)).reshape(rows, -1)),
        torch.from_numpy((dmin * m.astype(np.float32)).reshape(rows, -1)),
    )


@dataclass
class GGUFWeights:
    """A GGUF's weight matrices by the model's parameter names: the Q4_K ones decoded, the type of every other."""

    q4: dict[str, Q4Weights]
    other_types: dict[str, str]  # e.g. {"lm_head.weight": "Q6_K"}

    def only(self, names: Collection[str]) -> GGUFWeights:
        return GGUFWeights(
            {name: weights for name, weights in self.q4.items() if name in names},
            {name: kind for name, kind in self.other_types.items() if name in names},
        )


def read_gguf_weights(
    path: str | os.PathLike, model: nn.Module, names: Collection[str], keep: bool = False
) -> GGUFWeights:
    """The matrices `names` (the model's parameter names, "...q_proj.weight") in the GGUF file at `path`.

    Names are mapped as transformers maps them when it loads the file, and rows are put back in the order
    transformers puts them (it undoes llama.cpp's permutation of Llama's query and key rows); a caller should still
    check each Q4_K matrix against the model's own weights (`Q4Weights.dequantize`) before trusting it. `keep`: keep
    what was read beside the file (`kept_blocks_path`) and read that while the file is unchanged: gguf's reader
    parses every metadata field, the tokenizer's 300,000 strings one at a time (12-17 s for the default pair's little
    model on this project's CPU).
    """
    kept = kept_blocks_path(path)
    weights = _read_kept(kept, path) if keep else None
    if weights is None:
        weights = _read_gguf(path, model)
        if keep:
            _keep(weights, kept, path)
    return weights.only(names)


def kept_blocks_path(path: str | os.PathLike) -> Path:
    return Path(path).with_name(Path(path).name + ".q4k.safetensors")


def _read_gguf(path: str | os.PathLike, model: nn.Module) -> GGUFWeights:
    from gguf import GGMLQuantizationType, GGUFReader
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor, get_gguf_hf_weights_map

    hf_names = get_gguf_hf_weights_map(model)
    processor = TENSOR_PROCESSORS.get(model.config.model_type, TensorProcessor)(config=model.config.to_dict())
    found = GGUFWeights({}, {})
    for tensor in GGUFReader(str(path)).tensors:
        name = hf_names.get(tensor.name)
        if name is None:
            continue
        if tensor.tensor_type != GGMLQuantizationType.Q4_K:
            found.other_types[name] = tensor.tensor_type.name
            continue
        weights = decode_q4_k(np.asarray(tensor.data))
        rows = weights.integers.shape[0]
        # The processor works on whole rows: what it does to a column of row numbers is what it did to the rows.
        order = processor.process(weights=np.arange(rows).reshape(rows, 1), name=tensor.name).weights.reshape(-1)
        if not np.array_equal(order, np.arange(rows)):
            order = torch.from_numpy(np.ascontiguousarray(order))
            weights = Q4Weights(weights.integers[order], weights.scales[order], weights.mins[order])
        found.q4[name] = weights
    return found


def _stamp(path: str | os.PathLike) -> dict[str, str]:
    """What ties kept blocks to the file they were read from."""
    stat = os.stat(path)
    return {"format": "1", "size": str(stat.st_size), "mtime_ns": str(stat.st_mtime_ns)}


def _keep(weights: GGUFWeights, kept: Path, path: str | os.PathLike) -> None:
    """Write the blocks (two 4-bit integers a byte) under a temporary name, then rename: never half a file."""
    tensors = {}
    for name, q4 in weights.q4.items():
        tensors[f"{name}.integers"] = q4.integers[:, 0::2] | (q4.integers[:, 1::2] << 4)
        tensors[f"{name}.scales"], tensors[f"{name}.mins"] = q4.scales.contiguous(), q4.mins.contiguous()
    temporary = kept.with_name(kept.name + ".tmp")
    try:
        save_file(tensors, temporary, metadata={**_stamp(path), "other_types": json.dumps(weights.other_types)})
        os.replace(temporary, kept)
    except OSError as error:  # a read-only directory: read the file each time
        warnings.warn(f"cannot keep {path}'s 4-bit blocks in {kept.parent} ({error})", stacklevel=3)


def _read_kept(kept: Path, path: str | os.PathLike) -> GGUFWeights | None:
    """The blocks kept from `path`, or None where there are none, or they are damaged or older than the file."""
    try:
        with safe_open(kept, "pt") as kept_file:
            metadata = kept_file.metadata() or {}
            if any(metadata.get(key) != value for key, value in _stamp(path).items()):
                return None
            tensors = {key: kept_file.get_tensor(key) for key in kept_file.keys()}  # noqa: SIM118 (not iterable)
        weights = GGUFWeights({}, json.loads(metadata["other_types"]))
    except (OSError, SafetensorError, ValueError, KeyError):
        return None
    for key, packed in tensors.items():
        if key.endswith(".integers"):
            name = key.removesuffix(".integers")
            integers = torch.stack([packed & 0x0F, packed >> 4], dim=-1).reshape(packed.shape[0], -1)
            weights.q4[name] = Q4Weights(integers, tensors[f"{name}.scales"], tensors[f"{name}.mins"])
    return weights


def source_gguf(spec: str) -> Path | None:
    """The GGUF file a model was loaded or converted from, where it is still on disk: `spec` itself (a .gguf), or,
    for the built-in pair, the published file where it was put in <cache>/gguf/ (beside <cache>/models/)."""
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        return path if path.is_file() else None
    marker = read_json(path / MARKER) if path.is_dir() else None
    if not marker or "gguf_file" not in marker:
        return None
    kept = path.parent.parent / "gguf" / marker["gguf_file"]  # <cache>/models/<name> -> <cache>/gguf/<file>
    if kept.is_file():
        return kept
    warnings.warn(
        f"{marker['gguf_file']} is not kept, so {path.name}'s 4-bit weights are quantized from its fp32 weights; "
        "run `biglittle models fetch --keep-gguf` to use the file's own 4-bit blocks",
        stacklevel=2,
    )
    return None
