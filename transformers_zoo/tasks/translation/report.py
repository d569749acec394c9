"""What a translation run shows: sacreBLEU / chrF scores, hypothesis files, report.md's tables, the lines of an
evaluation, and cross-attention maps (the weights computed here, drawn by `viz.plot_cross_attention`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...generation import generate_many
from ...metrics import bleu, chrf
from ...modules import record_attention
from ...tokenizers import BOS, Tokenizer
from ...viz import plot_cross_attention
from .settings import SearchSettings

#: the texts of a test split's evaluation, as `write_hypotheses` names its files
SPLIT_TEXTS = ("hypotheses", "hypotheses_greedy", "references")


def score(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float | str]:
    """sacreBLEU corpus BLEU and chrF of detokenized hypotheses, with both signatures:
    `{"bleu", "chrf", "signature" (BLEU's), "chrf_signature"}`."""
    bleu_score, bleu_sig = bleu(hyps, refs)
    chrf_score, chrf_sig = chrf(hyps, refs)
    return {"bleu": bleu_score, "chrf": chrf_score, "signature": bleu_sig, "chrf_signature": chrf_sig}


def write_hypotheses(out_dir: Path, split: str, tgt: str, texts: dict[str, list[str]]) -> dict[str, str]:
    """Write `hyp/<split>.<tgt>` (beam), `hyp/<split>.greedy.<tgt>` and `hyp/<split>.ref.<tgt>` under `out_dir`,
    one detokenized sentence a line; returns their paths relative to `out_dir` (keyed like `texts`)."""
    names = {"hypotheses": f"{split}.{tgt}", "hypotheses_greedy": f"{split}.greedy.{tgt}",
             "references": f"{split}.ref.{tgt}"}
    (out_dir / "hyp").mkdir(parents=True, exist_ok=True)
    written = {}
    for key, name in names.items():
        (out_dir / "hyp" / name).write_text("".join(line + "\n" for line in texts[key]), encoding="utf-8")
        written[key] = f"hyp/{name}"
    return written


def scores_table(evals: dict[str, dict[str, Any]], search: SearchSettings) -> str:
    """Beam and greedy sacreBLEU / chrF per test split, with the signatures."""
    tests = {split: m for split, m in evals.items() if "bleu" in m}
    if not tests:
        return "(no test split)"
    b = f"beam {search.beam}"
    rows = [f"| split | pairs | BLEU ({b}) | BLEU (greedy) | chrF ({b}) | chrF (greedy) | loss |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for split, m in tests.items():
        rows.append(f"| {split} | {m['sentences']:,} | {m['bleu']:.2f} | {m['bleu_greedy']:.2f} | {m['chrf']:.2f} | "
                    f"{m['chrf_greedy']:.2f} | {m['loss']:.4f} |")
    first = next(iter(tests.values()))
    rows += ["", f"Length penalty {search.length_penalty:g}, at most {search.max_len_a:g} x source + "
             f"{search.max_len_b} tokens. sacreBLEU signatures:",
             f"BLEU `{first['signature']}`, chrF `{first['chrf_signature']}`."]
    return "\n".join(rows)


def selection_table(candidates: dict[str, dict], chosen: str, select: str) -> str:
    """Best vs averaged weights on validation, marking the one used for the test sets."""
    rows = [f"Selected by validation {'loss' if select == 'loss' else 'greedy BLEU'}: **{chosen}**.", "",
            "| weights | steps | val loss | val BLEU (greedy) | val chrF (greedy) |",
            "| --- | --- | ---: | ---: | ---: |"]
    for key, c in candidates.items():
        steps = ", ".join(str(s) for s in c["steps"])
        rows.append(f"| {key}{' (used)' if key == chosen else ''} | {steps} | {c['loss']:.4f} | "
                    f"{c['bleu_greedy']:.2f} | {c['chrf_greedy']:.2f} |")
    return "\n".join(rows)


def examples_table(pairs: list[tuple[str, str]], hyps: list[str] | None, n: int = 5) -> str:
    """The first `n` pairs as a markdown table: source, reference, translation."""
    if not hyps:
        return "(no test split)"
    rows = ["| source | reference | translation |", "| --- | --- | --- |"]
    for (src, ref), hyp in list(zip(pairs, hyps, strict=True))[:n]:
        rows.append(f"| {_cell(src)} | {_cell(ref)} | {_cell(hyp)} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def eval_lines(results: dict[str, dict[str, Any]], search: SearchSettings) -> list[str]:
    """What an evaluation prints: validation's metrics, each test split's scores, the BLEU signature."""
    lines = []
    for split, m in results.items():
        if "bleu" not in m:
            lines.append(f"{split}: " + "  ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float)))
            continue
        lines.append(f"{split}: BLEU {m['bleu']:.2f} chrF {m['chrf']:.2f} (beam {search.beam}, length penalty "
                     f"{search.length_penalty:g})  greedy: BLEU {m['bleu_greedy']:.2f} chrF {m['chrf_greedy']:.2f}  "
                     f"loss {m['loss']:.4f}")
    signature = next((m["signature"] for m in results.values() if "signature" in m), None)
    return lines + ([f"BLEU signature: {signature}"] if signature else [])


@torch.no_grad()
def cross_attention(model: nn.Module, src_ids: Sequence[int], tgt_ids: Sequence[int], layer: int = -1,
                    bos_id: int = BOS) -> torch.Tensor:
    """Cross-attention weights `(H, T, S)` of one decoder layer on a teacher-forced pass: query row `t` is
    the step that predicts `(tgt_ids + [EOS])[t]` from `[BOS] + tgt_ids[:t]`; key column `s` is `src_ids[s]`."""
    device = next(model.parameters()).device
    src = torch.tensor([list(src_ids)], device=device)  # (1, S)
    tgt_in = torch.tensor([[bos_id, *tgt_ids]], device=device)  # (1, T)
    name = f"decoder.layers.{layer % len(model.decoder.layers)}.cross_attn"
    was_training = model.training
    model.eval()
    with record_attention(model) as attn:
        model(src, tgt_in)
        weights = attn[name].weights
    model.train(was_training)
    return weights[0]


def attention_map(model: nn.Module, src_tok: Tokenizer, tgt_tok: Tokenizer, sentence: str, path: Path,
                  search: SearchSettings, heads: str = "mean") -> Path:
    """Translate `sentence` with an encoder-decoder (`search`'s beam search), then plot the last decoder layer's
    cross-attention on a teacher-forced pass over that translation: rows output tokens, columns source tokens;
    the mean of the heads or (`heads="all"`) one map per head."""
    src_ids = [*src_tok.encode(sentence)[: model.config.max_len - 1], src_tok.eos_id]
    out = generate_many(model, [src_ids], start=tgt_tok.bos_id, eos_id=tgt_tok.eos_id, **search.generation())[0]
    weights = cross_attention(model, src_ids, out, bos_id=tgt_tok.bos_id)  # (H, T, S)
    return plot_cross_attention(weights, [src_tok.id_to_piece(i) for i in src_ids],
                                [tgt_tok.id_to_piece(i) for i in [*out, tgt_tok.eos_id]], path, heads=heads,
                                title=f"{sentence}\n-> {tgt_tok.decode(out)}")


def attention_maps(model: nn.Module, src_tok: Tokenizer, tgt_tok: Tokenizer, sentences: Sequence[str], path: Path,
                   search: SearchSettings, heads: str = "mean") -> list[Path]:
    """`attention_map` of every non-empty sentence: the first at `path`, the i-th (from 1) at `path-i.png`."""
    return [attention_map(model, src_tok, tgt_tok, sentence, path if i == 0 else
                          path.with_name(f"{path.stem}-{i + 1}{path.suffix}"), search, heads)
            for i, sentence in enumerate(sentences) if sentence]
