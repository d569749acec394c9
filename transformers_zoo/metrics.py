"""Evaluation metrics: sacreBLEU and chrF with their signatures, accuracy, macro-F1, perplexity.

BLEU and chrF score detokenized text (what ``tokenizer.decode`` returns) with sacreBLEU's corpus API and
its defaults (BLEU: 13a tokenizer, exp smoothing, mixed case), and return sacreBLEU's signature so a
reported number says how it was computed. Scores are on sacreBLEU's 0-100 scale; accuracy and macro-F1
are fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from sacrebleu.metrics import BLEU, CHRF

from .batching import IGNORE_INDEX

__all__ = ["MAX_LOG_PPL", "accuracy", "bleu", "chrf", "macro_f1", "perplexity"]

#: perplexity() caps the loss here: exp(100) ~ 2.7e43 is "diverged" already, and float64 overflows at 709.
MAX_LOG_PPL = 100.0

Refs = Sequence[str] | Sequence[Sequence[str]]
Ints = Sequence[int] | torch.Tensor


def _ref_streams(hyps: Sequence[str], refs: Refs) -> list[list[str]]:
    """sacreBLEU's layout: a list of reference streams, each with one reference per hypothesis."""
    streams = [list(refs)] if len(refs) == 0 or isinstance(refs[0], str) else [list(s) for s in refs]
    for stream in streams:
        if len(stream) != len(hyps):
            raise ValueError(f"{len(hyps)} hypotheses but {len(stream)} references")
    if not hyps:
        raise ValueError("no hypotheses to score")
    return streams


def bleu(hyps: Sequence[str], refs: Refs) -> tuple[float, str]:
    """Corpus BLEU (0-100) of detokenized ``hyps`` against ``refs`` and sacreBLEU's signature.

    ``refs`` is one reference per hypothesis, or a list of such reference streams (several references).
    """
    metric = BLEU()
    score = metric.corpus_score(list(hyps), _ref_streams(hyps, refs))
    return float(score.score), str(metric.get_signature())


def chrf(hyps: Sequence[str], refs: Refs) -> tuple[float, str]:
    """Corpus chrF (0-100, sacreBLEU defaults: character 6-grams, beta 2) and sacreBLEU's signature."""
    metric = CHRF()
    score = metric.corpus_score(list(hyps), _ref_streams(hyps, refs))
    return float(score.score), str(metric.get_signature())


def _as_list(values: Ints) -> list[int]:
    return values.reshape(-1).tolist() if isinstance(values, torch.Tensor) else [int(v) for v in values]


def _pairs(preds: Ints, labels: Ints) -> list[tuple[int, int]]:
    """(pred, label) pairs, leaving out positions labelled IGNORE_INDEX (e.g. unmasked MLM positions)."""
    p, y = _as_list(preds), _as_list(labels)
    if len(p) != len(y):
        raise ValueError(f"{len(p)} predictions but {len(y)} labels")
    pairs = [(a, b) for a, b in zip(p, y, strict=True) if b != IGNORE_INDEX]
    if not pairs:
        raise ValueError("no labelled positions to score")
    return pairs


def accuracy(preds: Ints, labels: Ints) -> float:
    """Fraction of predictions equal to their label; positions labelled IGNORE_INDEX are left out."""
    pairs = _pairs(preds, labels)
    return sum(p == y for p, y in pairs) / len(pairs)


def macro_f1(preds: Ints, labels: Ints, n_classes: int) -> float:
    """Unweighted mean over classes of F1 = 2TP / (2TP + FP + FN).

    Classes that occur neither as label nor as prediction have no F1 and are left out of the mean (as
    scikit-learn's ``f1_score(average="macro")`` does); a class that occurs only on one side scores 0.
    """
    pairs = _pairs(preds, labels)
    if any(not (0 <= v < n_classes) for pair in pairs for v in pair):
        raise ValueError(f"predictions and labels must be class ids in [0, {n_classes})")
    f1s = []
    for c in range(n_classes):
        tp = sum(p == c and y == c for p, y in pairs)
        fp = sum(p == c and y != c for p, y in pairs)
        fn = sum(p != c and y == c for p, y in pairs)
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s)


def perplexity(loss: float | torch.Tensor) -> float:
    """``exp(loss)`` of a mean token cross-entropy in nats, with the loss capped at :data:`MAX_LOG_PPL`."""
    return math.exp(min(float(loss), MAX_LOG_PPL))
