"""Task metrics: corpus BLEU (sacrebleu) for translation, mean ROUGE-L F1 for summarization.

Both are on a 0–100 scale. Hypotheses and references are parallel lists of strings.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import BigLittleError

METRIC_OF_TASK = {"translation": "bleu", "summarization": "rouge_l"}


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise BigLittleError("hypotheses and references must be lists of strings, not single strings")
    if len(hypotheses) != len(references):
        raise BigLittleError(f"{len(hypotheses)} hypotheses but {len(references)} references; they must pair up")


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, exponential smoothing), 0–100."""
    _check(hypotheses, references)
    if not hypotheses:
        return 0.0
    import sacrebleu

    return float(sacrebleu.corpus_bleu([h.strip() for h in hypotheses], [[r.strip() for r in references]]).score)


_ROUGE = None


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure over the pairs (with Porter stemming), ×100."""
    _check(hypotheses, references)
    if not hypotheses:
        return 0.0
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    total = sum(_ROUGE.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references))
    return 100.0 * total / len(hypotheses)


def score(task: str, hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """{metric name: value} for the task: {'bleu': …} or {'rouge_l': …}."""
    if task == "translation":
        return {"bleu": bleu(hypotheses, references)}
    if task == "summarization":
        return {"rouge_l": rouge_l(hypotheses, references)}
    raise BigLittleError(f"unknown task {task!r}; choose one of: {', '.join(METRIC_OF_TASK)}")
