"""The zoo's own endpoints as plain functions of a served model (run on its engine's thread): translation with
n-best lists, mask filling, classification, search, sentence vectors and attention weights of any family."""

from __future__ import annotations

from typing import Any

import torch

from ..generation import beam_search
from ..modules.attention import record_attention
from .models import ServedModel


def translate(served: ServedModel, text: str, beam_size: int, n_best: int, max_tokens: int | None) -> list[dict]:
    """The `n_best` best translations of `text` by beam search: text, score (log-prob / length ** penalty) and
    log-probability; framed as the translation task frames sources (`ids + [EOS]`)."""
    model, tgt_tok = served.model, served.target_tokenizer
    cfg, search = model.config, served.search
    src = source_ids(served, text)
    budget = int(search.max_len_a * (len(src) - 1) + search.max_len_b)
    if max_tokens is not None:
        budget = min(budget, max_tokens)
    if cfg.positional == "learned":
        budget = min(budget, cfg.max_len - 1)
    device = next(model.parameters()).device
    src_t = torch.tensor([src], device=device)
    start = torch.full((1, 1), tgt_tok.bos_id, dtype=torch.long, device=device)
    hyps = beam_search(model, model.init_cache(src_t), start, max(budget, 1), tgt_tok.eos_id, beam_size=beam_size,
                       length_penalty=search.length_penalty, n_best=n_best)[0]
    return [{"text": tgt_tok.decode([t for t in h.tokens if t != tgt_tok.eos_id]), "score": h.score,
             "logprob": h.logprob, "tokens": len(h.tokens)} for h in hyps]


def source_ids(served: ServedModel, text: str) -> list[int]:
    ids = served.tokenizer.encode(text)[: served.context - 1]
    return [*ids, served.tokenizer.eos_id]


def fill_mask(served: ServedModel, text: str, top_k: int) -> list[list[dict]]:
    from ..tasks.mlm import fill_mask as fill

    return [[{"token": piece, "probability": prob} for piece, prob in masks]
            for masks in fill(served.model, served.tokenizer, text, top_k)]


def classify(served: ServedModel, texts: list[str]) -> list[dict]:
    from ..tasks.classification import encode_examples, predict_proba

    encoded, _ = encode_examples(served.tokenizer, [(t, 0) for t in texts], served.context - 2)
    probs = predict_proba(served.model, encoded, 8192, next(served.model.parameters()).device, served.tokenizer)
    out = []
    for p in probs.tolist():
        best = max(range(len(p)), key=p.__getitem__)
        out.append({"label": served.labels[best], "probabilities": dict(zip(served.labels, p, strict=True))})
    return out


def search(served: ServedModel, query: str, k: int) -> list[dict]:
    hits = served.index.search(served.encoder.encode([query]), k)[0]
    return [{"id": h.id, "text": h.text, "score": h.score} for h in hits]


def embed(served: ServedModel, texts: list[str]) -> tuple[Any, int]:
    """Sentence vectors `(N, D)` (numpy float32) and how many tokens they read."""
    from ..retrieval.encode import frame_ids

    tokens = sum(len(r) for r in frame_ids(served.tokenizer, texts, served.encoder.max_tokens))
    return served.encoder.encode(texts), tokens


MAX_ATTENTION_TOKENS = 96


@torch.no_grad()
def attention(served: ServedModel, text: str) -> dict[str, Any]:
    """Every attention map of `text`: per map its query and key tokens and weights `[layer][head][q][k]`.
    Decoder-only: causal self-attention over the prompt; encoder-only: self-attention over `[CLS] text [SEP]`;
    encoder-decoder: encoder self-attention, then decoder self- and cross-attention over its greedy translation
    (teacher-forced)."""
    model, tok = served.model, served.tokenizer
    device = next(model.parameters()).device
    n = min(served.context, MAX_ATTENTION_TOKENS)
    if served.family == "encoder_decoder":
        src = source_ids(served, text)[-n:]
        tgt_tok = served.target_tokenizer
        out = translate(served, text, 1, 1, n - 1)[0]
        tgt = [tgt_tok.bos_id, *tgt_tok.encode(out["text"])][: n]
        with record_attention(model) as attn:
            model(torch.tensor([src], device=device), torch.tensor([tgt], device=device))
        src_p, tgt_p = pieces(tok, src), pieces(tgt_tok, tgt)
        return {"maps": [_map("encoder self-attention", attn, "encoder", "self_attn", src_p, src_p),
                         _map("decoder self-attention", attn, "decoder", "self_attn", tgt_p, tgt_p),
                         _map("cross-attention", attn, "decoder", "cross_attn", tgt_p, src_p)],
                "output": out["text"]}
    if served.family == "encoder_only":
        ids = [tok.cls_id, *tok.encode(text)[: n - 2], tok.sep_id]
        ids = [i for i in ids if i is not None]
        with record_attention(model) as attn:
            model.encode(torch.tensor([ids], device=device))
    else:
        ids = tok.encode_prompt(text)[:n] or [tok.eos_id]
        with record_attention(model) as attn:
            model(torch.tensor([ids], device=device))
    p = pieces(tok, ids)
    return {"maps": [_map("self-attention", attn, "stack", "self_attn", p, p)]}


def pieces(tokenizer, ids: list[int]) -> list[str]:
    try:
        return [tokenizer.id_to_piece(i) for i in ids]
    except NotImplementedError:
        return [tokenizer.decode([i]) for i in ids]


def _map(name: str, attn: dict, stack: str, kind: str, queries: list[str], keys: list[str]) -> dict[str, Any]:
    layers = sorted((k for k in attn if k.startswith(f"{stack}.layers.") and k.endswith(kind)),
                    key=lambda k: int(k.split(".")[2]))
    weights = torch.stack([attn[k].weights[0] for k in layers])  # (L, H, Tq, Tk)
    return {"name": name, "queries": queries, "keys": keys, "layers": weights.shape[0], "heads": weights.shape[1],
            "weights": weights.float().mul(1e4).round().div(1e4).tolist()}
