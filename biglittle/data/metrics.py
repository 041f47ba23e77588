"""Task metrics: corpus BLEU (sacrebleu) for translation, mean ROUGE-L F1 for summarization, pass@1 for code.

All are on a 0–100 scale. Hypotheses and references are parallel lists of strings; pass@1 is the share
of answers whose program passed its tests (data/code.py, run in biglittle.sandbox).

Each metric is also a function of per-example sufficient statistics, summed: `statistics` gives one row
per example and `from_statistics` the metric of any sum of rows. A bootstrap resample of the examples is
then a sum over resampled rows (bench/bootstrap.py); corpus BLEU is recomputed exactly on each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy

from ..errors import BigLittleError

METRIC_OF_TASK = {"translation": "bleu", "summarization": "rouge_l", "code": "pass_at_1"}


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise BigLittleError("hypotheses and references must be lists of strings, not single strings")
    if len(hypotheses) != len(references):
        raise BigLittleError(f"{len(hypotheses)} hypotheses but {len(references)} references; they must pair up")


def _sacrebleu():
    import sacrebleu

    return sacrebleu.BLEU()  # defaults: 13a tokenisation, exponential smoothing


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, exponential smoothing), 0–100."""
    _check(hypotheses, references)
    if not hypotheses:
        return 0.0
    return float(_sacrebleu().corpus_score([h.strip() for h in hypotheses], [[r.strip() for r in references]]).score)


_ROUGE = None


def _rouge_l_f1(hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [_ROUGE.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references)]


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure over the pairs (with Porter stemming), ×100."""
    _check(hypotheses, references)
    if not hypotheses:
        return 0.0
    return 100.0 * sum(_rouge_l_f1(hypotheses, references)) / len(hypotheses)


def pass_at_1(passed: Sequence[bool]) -> float:
    """The share of answers that passed their tests, ×100 (one answer per problem: pass@1)."""
    return 100.0 * sum(map(bool, passed)) / len(passed) if len(passed) else 0.0


def score(task: str, hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """{metric name: value} for a text task: {'bleu': …} or {'rouge_l': …} (code: `pass_at_1` of the verdicts)."""
    if task == "translation":
        return {"bleu": bleu(hypotheses, references)}
    if task == "summarization":
        return {"rouge_l": rouge_l(hypotheses, references)}
    if task == "code":
        raise BigLittleError("the code task is scored by running tests: pass_at_1 of the sandbox's verdicts")
    raise BigLittleError(f"unknown task {task!r}; choose one of: {', '.join(METRIC_OF_TASK)}")


def statistics(
    task: str, hypotheses: Sequence[str], references: Sequence[str], passed: Sequence[bool] = ()
) -> numpy.ndarray:
    """[examples, k] per-example sufficient statistics of the task's metric (code: from `passed`)."""
    if task == "code":
        return 100.0 * numpy.asarray(passed, dtype=float).reshape(-1, 1)
    _check(hypotheses, references)
    if task == "summarization":
        return 100.0 * numpy.asarray(_rouge_l_f1(hypotheses, references), dtype=float).reshape(-1, 1)
    if task == "translation":
        rows = _sacrebleu()._extract_corpus_statistics(
            [h.strip() for h in hypotheses], [[r.strip() for r in references]]
        )  # per sentence: lengths, then matches and totals per n-gram order (what sacrebleu sums itself)
        return numpy.asarray(rows, dtype=float).reshape(len(hypotheses), -1)
    raise BigLittleError(f"unknown task {task!r}; choose one of: {', '.join(METRIC_OF_TASK)}")


def from_statistics(task: str, sums: numpy.ndarray, count: int) -> numpy.ndarray:
    """The metric of `count` examples whose statistics sum to `sums` ([..., k]); returns [...]."""
    sums = numpy.asarray(sums, dtype=float)
    if task in ("summarization", "code"):
        return sums[..., 0] / count if count else numpy.zeros(sums.shape[:-1])
    if not count:
        return numpy.zeros(sums.shape[:-1])
    metric = _sacrebleu()
    flat = sums.reshape(-1, sums.shape[-1])
    scores = [metric._compute_score_from_stats([int(value) for value in row]).score for row in flat]
    return numpy.asarray(scores, dtype=float).reshape(sums.shape[:-1])
