"""The peers: Hugging Face transformers' own assisted generation and prompt lookup, on the same models.

Both run greedy with a plain generation config (no model-specific defaults such as repetition
penalties), so their output is comparable token for token with `ar`'s. They read the prompt as
biglittle's runners do (`prefilling`): an int8 model attends the prompt's rows in one batched call,
and rows attended one by one round differently, enough to flip a near tie later on.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from transformers import GenerationConfig as HFGenerationConfig

from ..api import ModelPair
from ..decoding.loop import first_eos_end
from ..runtime.quantize import prefilling

PROMPT_LOOKUP_TOKENS = 10  # transformers' documented example value


@torch.inference_mode()
def peer_generate(pair: ModelPair, prompt_ids: list[int], engine: str, max_new_tokens: int) -> list[int]:
    """New token ids (up to and including the first end-of-sequence token) of a transformers peer."""
    target = pair.target
    # An encoder-decoder's output starts with the decoder start token; a decoder's with the prompt.
    first_new = 1 if target.model.config.is_encoder_decoder else len(prompt_ids)
    new_ids = hf_generate(pair, prompt_ids, engine, max_new_tokens)[0, first_new:].tolist()
    return new_ids[: first_eos_end(new_ids, target.eos_token_ids)]


@torch.inference_mode()
def hf_generate(pair: ModelPair, prompt_ids: list[int], engine: str, max_new_tokens: int, **options):
    """transformers' `generate` as the peer `engine` runs it; `options` go to `generate` (output_logits=True, say)."""
    target = pair.target
    eos = sorted(target.eos_token_ids)
    pad = target.tokenizer.pad_token_id if target.tokenizer.pad_token_id is not None else (eos or [0])[0]
    config = HFGenerationConfig(
        do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=eos or None, pad_token_id=pad
    )
    if engine == "hf-assisted":
        options["assistant_model"] = pair.draft.model
    elif engine == "hf-lookup":
        options["prompt_lookup_num_tokens"] = PROMPT_LOOKUP_TOKENS
    else:
        raise ValueError(f"unknown peer {engine!r}")
    input_ids = torch.tensor([prompt_ids], device=pair.target_runner.device)
    reading = nullcontext() if target.model.config.is_encoder_decoder else prefilling(len(prompt_ids) - 1)
    with reading:
        return target.model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=config,
            use_model_defaults=False,
            **options,
        )
