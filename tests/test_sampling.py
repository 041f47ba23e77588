import pytest
import torch

from biglittle.decoding.sampling import SamplingConfig, next_token, warp_probs

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def test_greedy_is_one_hot_at_argmax():
    probs = warp_probs(LOGITS, SamplingConfig(temperature=0))
    assert probs.tolist() == [1, 0, 0, 0, 0, 0]
    assert next_token(LOGITS, SamplingConfig(), None) == 0


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_scales_logits(temperature):
    probs = warp_probs(LOGITS, SamplingConfig(temperature=temperature))
    assert torch.allclose(probs, (LOGITS / temperature).softmax(-1))


def test_top_k_keeps_the_k_best_renormalised():
    probs = warp_probs(LOGITS, SamplingConfig(temperature=1.0, top_k=2))
    expected = torch.zeros(6)
    expected[:2] = LOGITS[:2].softmax(-1)
    assert torch.allclose(probs, expected)


def test_top_p_keeps_the_smallest_set_reaching_p():
    full = LOGITS.softmax(-1)  # ~[0.53, 0.20, 0.12, 0.07, 0.03, 0.004]
    probs = warp_probs(LOGITS, SamplingConfig(temperature=1.0, top_p=0.7))
    kept = (probs > 0).nonzero()[:, 0].tolist()
    assert kept == [0, 1]  # 0.53 < 0.7 <= 0.53 + 0.20
    assert torch.allclose(probs[:2], full[:2] / full[:2].sum())


def test_top_p_always_keeps_the_best_token():
    probs = warp_probs(LOGITS, SamplingConfig(temperature=1.0, top_p=0.01))
    assert probs.tolist() == [1, 0, 0, 0, 0, 0]


def test_rows_are_warped_independently_and_sum_to_one():
    logits = torch.stack([LOGITS, LOGITS.flip(0)])
    probs = warp_probs(logits, SamplingConfig(temperature=0.7, top_k=4, top_p=0.9))
    assert torch.allclose(probs.sum(-1), torch.ones(2))
    assert probs[0].argmax() == 0 and probs[1].argmax() == 5


def test_sampling_follows_the_distribution():
    generator = torch.Generator().manual_seed(0)
    config = SamplingConfig(temperature=1.0)
    counts = torch.zeros(6)
    for _ in range(4000):
        counts[next_token(LOGITS, config, generator)] += 1
    assert (counts / 4000 - LOGITS.softmax(-1)).abs().max() < 0.03  # ~4 standard errors


def test_top_k_one_is_the_argmax():
    probs = warp_probs(torch.tensor([0.1, 2.0, 1.0]), SamplingConfig(temperature=1.0, top_k=1))
    assert probs.tolist() == [0.0, 1.0, 0.0]


def test_top_p_stops_once_the_tokens_above_reach_p_exactly():
    logits = torch.tensor([0.5, 0.25, 0.25]).log()  # the best token alone holds exactly p = 0.5
    probs = warp_probs(logits, SamplingConfig(temperature=1.0, top_p=0.5))
    assert probs.tolist() == [1.0, 0.0, 0.0]
