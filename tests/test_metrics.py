"""Task metrics: corpus BLEU and mean ROUGE-L F1, both ×100."""

from __future__ import annotations

import pytest

from biglittle.data.metrics import bleu, rouge_l, score
from biglittle.errors import BigLittleError


def test_bleu_extremes_and_corpus_level():
    refs = ["The referee blew for full-time.", "He headed in the rebound."]
    assert bleu(refs, refs) == pytest.approx(100.0)
    assert bleu(["x y z w", "q r s t"], refs) == pytest.approx(0.0)
    partial = bleu(["The referee blew the whistle.", "He headed in the rebound."], refs)
    assert 0 < partial < 100
    # corpus BLEU is not the mean of sentence BLEUs: n-gram counts are pooled
    mean_of_sentences = (bleu(["The referee blew the whistle."], refs[:1]) + 100.0) / 2
    assert partial != pytest.approx(mean_of_sentences)


def test_bleu_matches_sacrebleu_directly():
    import sacrebleu

    hyps = ["I always take the shortcut across the park.", "The spirit is willing, but the flesh is weak."]
    refs = ["I usually cut across the park on my way home.", "The spirit is willing but the flesh is weak."]
    assert bleu(hyps, refs) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)


def test_rouge_l_is_mean_f_measure_times_100():
    assert rouge_l(["GNU Bourne Again SHell"], ["GNU Bourne Again SHell"]) == pytest.approx(100.0)
    # LCS "puzzle game" (2 tokens): P = 2/3, R = 2/4 -> F = 4/7; with an exact match the mean is (4/7 + 1)/2
    assert rouge_l(
        ["a puzzle game", "COBOL compiler"], ["mathematics based puzzle game", "COBOL compiler"]
    ) == pytest.approx(100 * (4 / 7 + 1) / 2)
    assert rouge_l(["completely unrelated"], ["COBOL compiler"]) == 0.0
    assert rouge_l(["games"], ["game"]) == pytest.approx(100.0)  # Porter stemming


def test_score_dispatches_by_task():
    assert score("translation", ["a b c d e"], ["a b c d e"]) == {"bleu": pytest.approx(100.0)}
    assert score("summarization", ["a b"], ["a b"]) == {"rouge_l": pytest.approx(100.0)}
    with pytest.raises(BigLittleError, match="unknown task"):
        score("poetry", [], [])


def test_bad_inputs():
    with pytest.raises(BigLittleError, match="pair up"):
        bleu(["a"], ["a", "b"])
    with pytest.raises(BigLittleError, match="lists of strings"):
        rouge_l("a b", "a b")
    assert bleu([], []) == 0.0 and rouge_l([], []) == 0.0
