"""The cost profile's curve survives a machine whose speed changes while it is measured (these VMs' steps moved by
up to 25% within minutes): a fake runner on a fake clock, whose every pass costs the same whatever its k."""

import pytest
from torch import nn

import biglittle.cost.profile as profile_module
from biglittle.cost.profile import measure_profile, profile_steps


class Clock:
    def __init__(self):
        self.now = 0.0
        self.passes = 0

    def __call__(self) -> float:
        return self.now


class FlatRunner:
    """A pass over any number of tokens costs `step` seconds, three times that during the clock's slow window."""

    is_encoder_decoder = False
    vocab_size = 10

    def __init__(self, clock: Clock, step: float, slow: range):
        self.clock, self.step, self.slow = clock, step, slow
        self.model = nn.Linear(4, 4)
        self.cache_len = 0

    def start(self, prompt):
        self.cache_len = 0
        return list(prompt)

    def crop(self, length):
        self.cache_len = min(self.cache_len, length)

    def forward(self, tokens, num_logits):
        self.clock.passes += 1
        self.clock.now += self.step * (3 if self.clock.passes in self.slow else 1)
        self.cache_len = len(tokens)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(profile_module.time, "perf_counter", clock)
    monkeypatch.setattr(profile_module, "measure_bandwidth", lambda: 1e10)
    return clock


def test_a_slow_spell_while_measuring_bends_neither_the_curve_nor_c(clock):
    # 2 models x 16 k a sweep: passes 60-110 fall in the second and third of five timed sweeps, slowing every k of
    # one model or the other in at most two sweeps of five.
    target, draft = FlatRunner(clock, 0.1, range(60, 110)), FlatRunner(clock, 0.03, range(60, 110))
    steps = []
    profile = measure_profile(target, draft, max_k=16, context_tokens=8, progress=lambda: steps.append(1))
    assert profile.verify_cost == pytest.approx([1.0] * 16)
    assert profile.draft_verify_cost == pytest.approx([1.0] * 16)
    assert profile.draft_cost == pytest.approx(0.3)
    assert len(steps) == profile_steps(16, has_draft=True)


class SwitchingRunner(FlatRunner):
    """A pass right after the other model's costs twice as much: what the first pass after a switch does here."""

    last_runner: list = [None]

    def forward(self, tokens, num_logits):
        switched = self.last_runner[0] is not self
        self.last_runner[0] = self
        self.clock.passes += 1
        self.clock.now += self.step * (2 if switched else 1)
        self.cache_len = len(tokens)


def test_the_first_pass_after_the_other_model_is_not_charged_to_k_1(clock):
    target, draft = SwitchingRunner(clock, 0.1, range(0)), SwitchingRunner(clock, 0.03, range(0))
    profile = measure_profile(target, draft, max_k=4, context_tokens=8)
    assert profile.verify_cost == pytest.approx([1.0] * 4) and profile.draft_cost == pytest.approx(0.3)
