"""Bootstrap confidence intervals of a setting's quality and speedup, paired with the baseline.

Examples are resampled with replacement (with every repeat of a drawn example). The draws depend only on
the number of examples and a fixed seed, so every setting of a task is resampled on the same examples as
the baseline ("Vanilla (large)"): the interval of a quality *difference* then reflects the settings'
disagreement on the same examples, not the spread of the examples' difficulty. On each resample:
quality is the task's metric (corpus BLEU recomputed from its sufficient statistics, mean ROUGE-L,
pass@1), averaged over repeats; speedup is the ratio of summed times (baseline over setting). The
intervals are the 2.5th and 97.5th percentiles of 1,000 resamples. A setting's quality is
*distinguishable* from the baseline's when the interval of their paired difference excludes 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from ..data.metrics import from_statistics

RESAMPLES = 1000
LEVEL = 0.95
SEED = 20230601


@dataclass(frozen=True)
class Sample:
    """One setting's records of a task, aligned by example (the same order for the setting and the baseline)."""

    statistics: numpy.ndarray  # [repeats, examples, k] the metric's per-example sufficient statistics
    seconds: numpy.ndarray  # [repeats, examples] wall time of each generation


def draws(count: int, resamples: int = RESAMPLES, seed: int = SEED) -> numpy.ndarray:
    """[resamples, count] example indices drawn with replacement; the same for the same count and seed."""
    return numpy.random.default_rng(seed).integers(0, count, size=(resamples, count))


def quality_resamples(task: str, sample: Sample, indices: numpy.ndarray) -> numpy.ndarray:
    """[resamples] the metric on each resample, averaged over repeats."""
    sums = sample.statistics[:, indices, :].sum(axis=2)  # [repeats, resamples, k]
    return from_statistics(task, sums, indices.shape[1]).mean(axis=0)


def interval(values: numpy.ndarray, level: float = LEVEL) -> list[float]:
    tail = 100 * (1 - level) / 2
    low, high = numpy.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def paired_intervals(task: str, setting: Sample, baseline: Sample) -> dict:
    """Intervals of the setting's quality, of its difference to the baseline's, and of its speedup."""
    count = setting.seconds.shape[1]
    everything = numpy.arange(count)[None, :]  # the sample itself: the point estimate
    difference = float(
        (quality_resamples(task, setting, everything) - quality_resamples(task, baseline, everything))[0]
    )
    indices = draws(count)
    quality = quality_resamples(task, setting, indices)
    differences = quality - quality_resamples(task, baseline, indices)
    speedup = baseline.seconds[:, indices].sum(axis=(0, 2)) / setting.seconds[:, indices].sum(axis=(0, 2))
    low, high = interval(differences)
    return {
        "examples": count,
        "quality": interval(quality),
        "difference": difference,
        "difference_interval": [low, high],
        "speedup": interval(speedup),
        "distinguishable": not low <= 0.0 <= high,
    }
