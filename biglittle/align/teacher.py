"""One teacher-forced forward: the model's logits at each position of a given output."""

from __future__ import annotations

import inspect

import torch


def output_logits(model, prompt_ids: list[int], output_ids: list[int]) -> torch.Tensor:
    """Logits [len(output_ids), rows]: row i predicts output_ids[i] after the prompt and output_ids[:i].

    Runs with gradients when the caller allows them (training) and without under inference_mode.
    """
    device = model.device
    if model.config.is_encoder_decoder:
        decoder = [model.config.decoder_start_token_id] + list(output_ids[:-1])
        out = model(
            input_ids=torch.tensor([prompt_ids], device=device),
            decoder_input_ids=torch.tensor([decoder], device=device),
        )
        return out.logits[0]
    tokens = list(prompt_ids) + list(output_ids[:-1])  # the last output token predicts nothing we need
    extra = {}
    if _keeps_logits(model):
        extra["logits_to_keep"] = len(
            output_ids
        )  # skip the output layer over the prompt: most of a big vocabulary's cost
    logits = model(input_ids=torch.tensor([tokens], device=device), **extra).logits[0]
    return logits[-len(output_ids) :]


def _keeps_logits(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper passes it on
    return "logits_to_keep" in inspect.signature(base.forward).parameters
