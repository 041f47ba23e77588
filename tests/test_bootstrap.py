"""Bootstrap intervals: corpus BLEU recomputed on resamples, pairing with the baseline, coverage, cost."""

import time

import numpy
import pytest

from biglittle.bench.bootstrap import RESAMPLES, Sample, draws, interval, paired_intervals
from biglittle.data.metrics import bleu, from_statistics, rouge_l, statistics

HYPOTHESES = [
    "The referee blew the whistle.",
    "He headed in the rebound.",
    "The cat sat on the mat today.",
    "We went to the station by bus.",
    "I do not know.",
]
REFERENCES = [
    "The referee blew for full-time.",
    "He headed in the rebound.",
    "The cat is sitting on the mat.",
    "We took the bus to the station.",
    "I don't know that.",
]


def sample(task, hypotheses, references, seconds=None, passed=()):
    stats = statistics(task, hypotheses, references, passed)
    count = stats.shape[0]
    times = numpy.ones(count) if seconds is None else numpy.asarray(seconds, dtype=float)
    return Sample(stats[None], times[None])


def test_metrics_from_summed_statistics_equal_the_metrics_on_any_resample():
    """A resample is a sum of per-example rows: corpus BLEU and mean ROUGE-L come out as computed directly."""
    for task, metric in (("translation", bleu), ("summarization", rouge_l)):
        rows = statistics(task, HYPOTHESES, REFERENCES)
        for indices in ([0, 1, 2, 3, 4], [1, 1, 3], [4, 0, 0, 2, 2]):
            direct = metric([HYPOTHESES[i] for i in indices], [REFERENCES[i] for i in indices])
            assert float(from_statistics(task, rows[indices].sum(axis=0), len(indices))) == pytest.approx(direct)
    passed = statistics("code", [], [], [True, False, True, True])
    assert float(from_statistics("code", passed.sum(axis=0), 4)) == 75.0


def test_draws_are_fixed_and_uniform():
    first = draws(20)
    assert first.shape == (RESAMPLES, 20) and (draws(20) == first).all()
    counts = numpy.bincount(first.ravel(), minlength=20) / first.size
    assert numpy.allclose(counts, 1 / 20, atol=0.01)


def test_identical_settings_are_not_distinguishable():
    same = sample("translation", HYPOTHESES, REFERENCES)
    result = paired_intervals("translation", same, same)
    assert result["difference"] == 0 and result["difference_interval"] == [0.0, 0.0]
    assert result["distinguishable"] is False and result["speedup"] == [1.0, 1.0]
    low, high = result["quality"]
    assert low <= bleu(HYPOTHESES, REFERENCES) <= high and low < high


def test_pairing_makes_a_consistent_small_gain_distinguishable():
    """Per-example scores spread over 0-100 and a setting 2 points better on every example: paired, the
    difference is exactly 2 on every resample; unpaired, its interval would span tens of points."""
    rng = numpy.random.default_rng(1)
    base = rng.uniform(0, 90, size=40)
    baseline = Sample(base[None, :, None], numpy.ones((1, 40)))
    better = Sample((base + 2)[None, :, None], numpy.ones((1, 40)))
    result = paired_intervals("summarization", better, baseline)
    assert result["difference_interval"] == pytest.approx([2.0, 2.0]) and result["distinguishable"] is True
    low, high = result["quality"]
    assert high - low > 10  # the quality itself is uncertain; the paired difference is not


def test_speedup_is_the_ratio_of_summed_times_on_each_resample():
    baseline = Sample(numpy.zeros((1, 3, 1)), numpy.array([[1.0, 2.0, 3.0]]))
    setting = Sample(numpy.zeros((1, 3, 1)), numpy.array([[0.5, 1.0, 1.5]]))
    assert paired_intervals("code", setting, baseline)["speedup"] == pytest.approx([2.0, 2.0])
    # Half the examples 10x faster, half 1.9x slower: in total as fast as the baseline (a mean of per-example
    # ratios would claim 5x).
    seconds = numpy.array([[0.1, 1.9] * 25])
    low, high = paired_intervals(
        "code", Sample(numpy.zeros((1, 50, 1)), seconds), Sample(numpy.zeros((1, 50, 1)), numpy.ones((1, 50)))
    )["speedup"]
    assert 0.7 < low <= 1.0 <= high < 1.4


def test_repeats_stay_with_their_example():
    """A resample draws examples, each with all its repeats: here every example takes twice as long with the
    baseline summed over its two repeats, so every resample's speedup is exactly 2."""
    setting = Sample(numpy.zeros((2, 2, 1)), numpy.ones((2, 2)))  # [repeats, examples]
    baseline = Sample(numpy.zeros((2, 2, 1)), numpy.array([[1.0, 3.0], [3.0, 1.0]]))
    assert paired_intervals("code", setting, baseline)["speedup"] == pytest.approx([2.0, 2.0])


def test_95_percent_intervals_cover_the_true_pass_rate():
    """Simulated pass@1 on 100 problems at a true rate of 60%: the interval covers 60 in about 95% of datasets."""
    rng = numpy.random.default_rng(7)
    covered = 0
    for _ in range(60):
        passed = rng.random(100) < 0.6
        data = Sample(100.0 * passed[None, :, None], numpy.ones((1, 100)))
        low, high = paired_intervals("code", data, data)["quality"]
        covered += low <= 60 <= high
    assert covered >= 52  # 60 × 0.95 = 57 expected; a 90% or 50% interval would fall well below


def test_interval_is_the_central_95_percent():
    values = numpy.arange(1001, dtype=float)
    assert interval(values) == pytest.approx([25.0, 975.0])


def test_corpus_bleu_on_a_thousand_resamples_is_cheap():
    hypotheses, references = HYPOTHESES * 60, REFERENCES * 60  # 300 sentences
    data = sample("translation", hypotheses, references)
    started = time.perf_counter()
    paired_intervals("translation", data, data)
    assert time.perf_counter() - started < 5  # about 0.1 s here; two metrics per resample
