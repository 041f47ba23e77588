"""Loading models (hub id, local directory or GGUF file) and checking that a pair can work together."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..config import PRECISIONS
from ..errors import BigLittleError
from .fetch import FETCH_HINT, MARKER
from .gguf_weights import source_gguf
from .int4 import WIDER_LAYERS, Int4Linear, int4_problem, quantize_model_int4
from .quantize import fastest_precision, quantize_model

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # the PRECISIONS that are dtypes


@dataclass
class LoadedModel:
    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase

    @property
    def context_length(self) -> int | None:
        config = self.model.config
        return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

    @property
    def eos_token_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            return set()
        return set(eos) if isinstance(eos, (list, tuple)) else {int(eos)}

    @property
    def end_token_id(self) -> int | None:
        """The token that ends a text: the first of the generation config's (an instruct model's end of turn)."""
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return int(eos[0]) if isinstance(eos, (list, tuple)) and eos else eos


def load_model(
    spec: str, dtype: str = "fp32", device: str | torch.device = "cpu", as_draft: bool = False
) -> LoadedModel:
    """Load a model and its tokenizer from a hub id, a local directory, or a `.gguf` file. `as_draft`: a little model,
    which at int4 is 4-bit in every matrix (apply_precision) and which `auto` may make so."""
    if dtype not in PRECISIONS:
        raise BigLittleError(f"unknown precision {dtype!r}; choose one of {', '.join(PRECISIONS)}")
    if dtype in ("int8", "int4") and str(device).split(":")[0] != "cpu":  # before the device check: more useful
        raise BigLittleError(f"{dtype} runs on the CPU only, not {device}; on a GPU choose bf16 or fp16 (or auto)")
    device = checked_device(device)
    location, extra = _resolve(spec)
    try:
        config = AutoConfig.from_pretrained(location, **extra)
        model_class = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        model = model_class.from_pretrained(location, dtype=DTYPES.get(dtype, torch.float32), **extra)
        tokenizer = _load_tokenizer(location, extra, config)
    # A damaged tokenizer.json sends transformers to a slow-tokenizer fallback that asks for protobuf: ImportError.
    except (OSError, ValueError, ImportError, SafetensorError) as error:
        raise BigLittleError(f"could not load model {spec!r}: {_why_not_loaded(location, extra, error)}") from error
    model.to(device).eval()
    precision = (
        fastest_precision(model, also=_draft_precisions(model) if as_draft else None) if dtype == "auto" else dtype
    )
    gguf = source_gguf(spec) if precision == "int4" else None
    # A fetched model's GGUF lies in biglittle's cache, where its decoded blocks can be kept; a user's own: left alone.
    apply_precision(model, precision, gguf, all_int4=as_draft, keep_blocks=Path(spec).suffix != ".gguf")
    return LoadedModel(spec, model, tokenizer)


def _draft_precisions(model: PreTrainedModel) -> dict:
    """What `auto` may choose for a little model besides a big model's choices: wholly 4-bit, where torch's int4 kernel
    runs here (a draft's precision changes its acceptance, never the output; a big model at int4 is slower end to end
    than at int8 on this project's CPU, its prompt and verification passes being slower: docs/precision.md)."""
    return {"int4": Int4Linear.from_module} if int4_problem(model) is None else {}


def apply_precision(
    model: PreTrainedModel,
    precision: str,
    gguf: str | Path | None = None,
    all_int4: bool = False,
    keep_blocks: bool = False,
) -> None:
    """Make `model` (fp32) compute in `precision` (not auto), in place; int4 takes `gguf`'s own 4-bit blocks, and
    makes the matrices the GGUF holds in more bits int8, or 4-bit too with `all_int4` (a little model: 25% faster a
    step for the 0.5B, docs/precision.md; its passes over many rows then run on an int8 copy: Int4DraftLinear).
    `keep_blocks`: keep the GGUF's decoded 4-bit blocks beside it, for later loads (read_gguf_weights)."""
    if precision == "int8":
        quantize_model(model)
    elif precision == "int4":
        wider = "int4" if all_int4 else WIDER_LAYERS
        quantize_model_int4(model, gguf, wider_layers=wider, draft=all_int4, keep_blocks=keep_blocks)
    else:
        model.to(DTYPES[precision])


def checked_device(name: str | torch.device) -> torch.device:
    """The torch device `name` names, if this machine has it; else a one-line error (before any model loads)."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise BigLittleError(f"unknown device {str(name)!r}: {_first_line(error)}; use cpu, or cuda / cuda:N") from None
    if device.type == "cpu":
        return device
    accelerator = torch.accelerator.current_accelerator()
    count = torch.accelerator.device_count() if accelerator is not None and accelerator.type == device.type else 0
    if count == 0 or (device.index or 0) >= count:
        found = f"{count} {device.type} device(s)" if count else f"no {device.type} device"
        raise BigLittleError(
            f"device {str(name)!r} is not available: torch {torch.__version__} finds {found} here; "
            "use --device cpu" + (f" or one of {device.type}:0..{count - 1}" if count else "")
        )
    return device


def _why_not_loaded(location: str, extra: dict, error: Exception) -> str:
    """Why a model failed to load, in one line: the corrupt file if one is, and what to do about it."""
    local = Path(location)
    damage = _damaged_file(local, extra.get("gguf_file")) if local.is_dir() else None
    if damage is None:
        return _first_line(error)
    path, detail = damage
    if (local / MARKER).is_file():  # the built-in pair: `models fetch` skips a model it finds installed
        remedy = f"delete {local} and {FETCH_HINT} to install it again"
    else:
        remedy = "replace it with a good copy (download or save the model again)"
    return f"{path} is corrupt ({detail}); {remedy}"


def _damaged_file(directory: Path, gguf_file: str | None) -> tuple[Path, str] | None:
    """(file, what is wrong) for the first file of a model directory that its library cannot read, or None."""
    if gguf_file is not None:
        return _unreadable(directory / gguf_file, _read_gguf)
    checks = [(directory / name, _read_json) for name in ("config.json", "tokenizer_config.json")]
    checks.append((directory / "tokenizer.json", Tokenizer.from_file))
    checks += [(path, _read_safetensors_header) for path in sorted(directory.glob("*.safetensors"))]
    for path, read in checks:
        damage = _unreadable(path, read) if path.is_file() else None
        if damage is not None:
            return damage
    return None


def _unreadable(path: Path, read) -> tuple[Path, str] | None:
    try:
        read(str(path))
    except Exception as error:  # each library has its own error types; any of them means "cannot read this file"
        return path, _first_line(error)
    return None


def _read_json(path: str) -> None:
    with open(path, encoding="utf-8") as fh:
        json.load(fh)


def _read_safetensors_header(path: str) -> None:
    with safe_open(path, "pt"):  # reads the header and checks that it covers the whole file
        pass


def _read_gguf(path: str) -> None:
    from gguf import GGUFReader

    GGUFReader(path)


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# transformers 4.57.3-4.x warns of "an incorrect regex pattern" (a Mistral tokenizer bug) for every local model
# whose config.json a 4.57.3+ wrote, whatever its type, and changes nothing unless asked to. For other model
# types the warning is false: say so, which silences only it (tests/test_models.py checks that tokenization is
# unchanged, and test_integration.py that the default pair's matches llama.cpp's).
MISTRAL_TYPES = ("mistral", "mistral3", "voxtral", "ministral", "pixtral")


def _tokenizer_options(config) -> dict:
    return {} if getattr(config, "model_type", None) in MISTRAL_TYPES else {"fix_mistral_regex": False}


def _load_tokenizer(location: str, extra: dict, config):
    return AutoTokenizer.from_pretrained(location, **extra, **_tokenizer_options(config))


def load_tokenizer(spec: str):
    """The tokenizer `load_model(spec)` would give, without loading the model's weights."""
    location, extra = _resolve(spec)
    try:
        return _load_tokenizer(location, extra, AutoConfig.from_pretrained(location, **extra))
    except (OSError, ValueError) as error:
        raise BigLittleError(f"could not load the tokenizer of {spec!r}: {error}") from error


def _resolve(spec: str) -> tuple[str, dict]:
    """(location for from_pretrained, extra keyword arguments), or a one-line error."""
    path = Path(os.path.expanduser(spec))
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise BigLittleError(f"GGUF file not found: {spec}")
        return str(path.parent), {"gguf_file": path.name}
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BigLittleError(f"{spec} is a directory but holds no model (no config.json)")
        return str(path), {}
    if path.exists():
        raise BigLittleError(f"{spec} is a file; pass a model directory, a .gguf file or a hub id")
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise BigLittleError(f"model path not found: {spec}")
    if not _in_hub_cache(spec) and not _hub_reachable():
        raise BigLittleError(
            f"model {spec!r} is not a local path and the Hugging Face hub cannot be reached; "
            "run `biglittle models fetch` for the default pair, or pass a local directory or .gguf file"
        )
    return spec, {}


def _in_hub_cache(repo_id: str) -> bool:
    try:
        AutoConfig.from_pretrained(repo_id, local_files_only=True)
        return True
    except (OSError, ValueError):
        return False


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def shared_vocab_size(target: LoadedModel, draft: LoadedModel) -> int:
    """Number of logit rows both models score alike; refuses pairs whose tokenizers differ.

    Token->id maps are compared, not matrix sizes: embedding matrices are often padded
    (Qwen's have 151,936 rows for fewer real tokens).
    """
    target_vocab, draft_vocab = target.tokenizer.get_vocab(), draft.tokenizer.get_vocab()
    if target_vocab != draft_vocab:
        raise BigLittleError(
            f"the models do not share a tokenizer: {_vocab_difference(target_vocab, draft_vocab)} "
            "(a speculative draft may have its own tokenizer: generate --cross-tokenizer)"
        )
    if target.model.config.is_encoder_decoder != draft.model.config.is_encoder_decoder:
        raise BigLittleError("one model is encoder-decoder and the other decoder-only; pair models of one kind")
    if target.model.config.is_encoder_decoder:
        starts = (target.model.config.decoder_start_token_id, draft.model.config.decoder_start_token_id)
        if starts[0] != starts[1]:
            raise BigLittleError(f"the models start decoding with different tokens (decoder_start_token_id {starts})")
    rows = min(logit_rows(target), logit_rows(draft))
    if rows < len(target_vocab):
        raise BigLittleError(f"a model scores only {rows} tokens but the tokenizer has {len(target_vocab)}")
    return rows


def logit_rows(model: LoadedModel) -> int:
    """Rows of the output layer: the vocabulary the model scores, padding included."""
    head = model.model.get_output_embeddings()
    return getattr(head, "out_features", None) or head.weight.shape[0]  # an int8 head's weight is a costly copy


def _vocab_difference(target_vocab: dict[str, int], draft_vocab: dict[str, int]) -> str:
    only_target = sorted(set(target_vocab) - set(draft_vocab))
    only_draft = sorted(set(draft_vocab) - set(target_vocab))
    moved = sorted(t for t in set(target_vocab) & set(draft_vocab) if target_vocab[t] != draft_vocab[t])
    parts = [f"target has {len(target_vocab)} tokens, draft {len(draft_vocab)}"]
    if only_target:
        parts.append(f"{len(only_target)} only in the target (e.g. {only_target[:3]})")
    if only_draft:
        parts.append(f"{len(only_draft)} only in the draft (e.g. {only_draft[:3]})")
    if moved:
        token = moved[0]
        parts.append(f"{len(moved)} with other ids (e.g. {token!r}: {target_vocab[token]} vs {draft_vocab[token]})")
    return "; ".join(parts)
