"""One teacher-forced forward: the model's logits at each position of a given output."""

from __future__ import annotations

import torch


def output_logits(model, prompt_ids: list[int], output_ids: list[int]) -> torch.Tensor:
    """Logits [len(output_ids), rows]: row i predicts output_ids[i] after the prompt and output_ids[:i].

    Runs with gradients when the caller allows them (training) and without under inference_mode.
    """
    device = model.device
    if model.config.is_encoder_decoder:
        decoder = [model.config.decoder_start_token_id] + list(output_ids[:-1])
        out = model(input_ids=torch.tensor([prompt_ids], device=device), decoder_input_ids=torch.tensor([decoder], device=device))
        return out.logits[0]
    tokens = list(prompt_ids) + list(output_ids[:-1])  # the last output token predicts nothing we need
    logits = model(input_ids=torch.tensor([tokens], device=device)).logits[0]
    return logits[len(prompt_ids) - 1 :]
