"""metrics: BLEU/chrF against the sacrebleu command line, macro-F1 by hand, accuracy, perplexity."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from transformers_zoo.metrics import accuracy, bleu, chrf, macro_f1, perplexity

HYPS = [
    "A man in an orange hat is looking at something.",
    "A Boston terrier runs on green grass in front of a white fence.",
    "A girl in a karate uniform breaks a board with a kick.",
    "Five people in winter jackets and helmets stand in the snow.",
]
REFS = [
    "A man in an orange hat starring at something.",
    "A Boston Terrier is running on lush green grass in front of a white fence.",
    "A girl in karate uniform breaking a stick with a front kick.",
    "Five people wearing winter jackets and helmets stand in the snow, with snowmobiles in the background.",
]


def sacrebleu_cli(tmp_path, metric: str) -> float:
    (tmp_path / "hyp.txt").write_text("\n".join(HYPS) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(REFS) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "sacrebleu", str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"),
         "-m", metric, "-b", "-w", "6"],
        capture_output=True, text=True, check=True,
    )
    return float(out.stdout.strip())


@pytest.mark.parametrize(("fn", "metric"), [(bleu, "bleu"), (chrf, "chrf")])
def test_matches_sacrebleu_cli(tmp_path, fn, metric):
    score, signature = fn(HYPS, REFS)
    assert score == pytest.approx(sacrebleu_cli(tmp_path, metric), abs=1e-5)
    assert 0 < score < 100
    assert "nrefs:1" in signature and "version:" in signature
    if metric == "bleu":
        assert "tok:13a" in signature and "smooth:exp" in signature


def test_bleu_edge_cases():
    assert bleu(REFS, REFS)[0] == pytest.approx(100.0)
    assert bleu(HYPS, [REFS, HYPS])[1].startswith("nrefs:2")
    with pytest.raises(ValueError, match="4 hypotheses but 3 references"):
        bleu(HYPS, REFS[:3])


def test_macro_f1_by_hand():
    labels = [0, 0, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 2, 0]
    # class 0: tp 1, fp 1, fn 1 -> 2/4; class 1: tp 2, fp 1, fn 0 -> 4/5; class 2: tp 1, fp 0, fn 1 -> 2/3
    expected = (0.5 + 0.8 + 2 / 3) / 3
    assert macro_f1(preds, labels, 3) == pytest.approx(expected)
    assert macro_f1(torch.tensor(preds), torch.tensor(labels), 4) == pytest.approx(expected)  # absent class
    assert macro_f1([1, 1], [1, 1], 2) == 1.0
    with pytest.raises(ValueError):
        macro_f1([3], [0], 3)


def test_accuracy_and_perplexity():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert accuracy(torch.tensor([[1, 2], [3, 4]]), torch.tensor([[1, -100], [0, 4]])) == pytest.approx(2 / 3)
    assert perplexity(math.log(20.0)) == pytest.approx(20.0)
    assert perplexity(torch.tensor(2.0)) == pytest.approx(math.exp(2.0))
    assert math.isfinite(perplexity(1e6))
