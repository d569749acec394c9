"""Search, kept apart from the models: greedy, sampling (temperature, top-k, top-p) and beam search.

Written once against a small interface that both generative families implement:
- a `KVCache` from `model.init_cache(batch_size)` (DecoderOnly) or `model.init_cache(src)`
  (EncoderDecoder: encodes once and keeps the cross-attention keys/values);
- `model.decode_step(tokens (B, t), cache, attention_mask=None) -> logits (B, V)` appends tokens to the
  cache and returns the logits for the next token;
- `cache.reorder(index)` to expand and reorder beams, and `model.config.pad_id`.

`prompt (B, T0)` is what decoding starts from: a (left-padded, with `prompt_mask`) text prompt for a
decoder-only model, or a column of BOS for an encoder-decoder. Every function is batched, uses the
cache (each step feeds one token) and stops as soon as every row has produced `eos_id`. `pad_id` is
never generated (models read it as padding).

`generate_many` decodes many inputs at once: sorted by length into batches of a token budget, each output
within its own length budget (fairseq's `--max-tokens`, `--max-len-a/b`), for either family.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Scale `logits (B, V)` by 1/temperature and set to -inf every token outside the top-k and outside
    the smallest set whose probability reaches top_p (nucleus sampling; the top token always stays)."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 (use greedy for temperature 0)")
    logits = logits / temperature
    if top_k is not None and top_k > 0 and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability mass strictly above each token
        sorted_logits = sorted_logits.masked_fill(before >= top_p, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


@torch.no_grad()
def _next_logits(model, tokens: torch.Tensor, cache, mask: torch.Tensor | None = None,
                 keep: Collection[int] = ()) -> torch.Tensor:
    """Next-token logits `(B, V)` in fp32 with padding ruled out (unless `pad_id` is in `keep`: a checkpoint
    that pads with its end-of-turn token must still be able to end a turn)."""
    logits = model.decode_step(tokens, cache, mask).float()
    if model.config.pad_id not in keep:
        logits[:, model.config.pad_id] = float("-inf")
    return logits


def iter_tokens(model, cache, prompt: torch.Tensor, choose: Callable[[torch.Tensor], torch.Tensor],
                max_new_tokens: int, eos_id: int | None = None, prompt_mask: torch.Tensor | None = None,
                stop_ids: Collection[int] = ()) -> Iterator[torch.Tensor]:
    """Yield the next token of every row `(B,)` until all rows have emitted `eos_id` (or one of `stop_ids`:
    a chat template's end of turn, never ruled out as padding) or the budget ends.

    `choose(logits (B, V)) -> (B,)` picks the tokens. Rows that finished yield `pad_id`. This is the
    streaming form; `greedy` and `sample` collect it. The cache holds every token but the last one yielded.
    """
    pad_id = model.config.pad_id
    stops = torch.tensor(sorted({*stop_ids, *(() if eos_id is None else (eos_id,))}), device=prompt.device)
    finished = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    logits = _next_logits(model, prompt, cache, prompt_mask, stop_ids)
    for step in range(max_new_tokens):
        token = choose(logits)
        token = token.masked_fill(finished, pad_id)
        yield token
        if len(stops):
            finished |= torch.isin(token, stops)
            if bool(finished.all()):
                return
        if step + 1 < max_new_tokens:
            logits = _next_logits(model, token[:, None], cache, keep=stop_ids)


@torch.no_grad()
def greedy(model, cache, prompt: torch.Tensor, max_new_tokens: int, eos_id: int | None = None,
           prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The most likely token at every step. Returns the new tokens `(B, n)`, EOS included, `pad_id` after."""
    steps = iter_tokens(model, cache, prompt, lambda logits: logits.argmax(dim=-1), max_new_tokens, eos_id,
                        prompt_mask)
    return _stack(list(steps), prompt)


@torch.no_grad()
def sample(model, cache, prompt: torch.Tensor, max_new_tokens: int, eos_id: int | None = None, *,
           temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           generator: torch.Generator | None = None, prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Ancestral sampling from the filtered distribution (see `filter_logits`); reproducible with a
    seeded `generator`. `top_k=1` is greedy. Returns `(B, n)` like `greedy`."""
    steps = iter_tokens(model, cache, prompt, sampler(temperature, top_k, top_p, generator), max_new_tokens,
                        eos_id, prompt_mask)
    return _stack(list(steps), prompt)


def sampler(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
            generator: torch.Generator | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A `choose` function for `iter_tokens` that samples from the filtered distribution."""

    def choose(logits: torch.Tensor) -> torch.Tensor:
        probs = filter_logits(logits, temperature, top_k, top_p).softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    return choose


def _stack(tokens: list[torch.Tensor], prompt: torch.Tensor) -> torch.Tensor:
    if not tokens:
        return prompt.new_empty(prompt.shape[0], 0)
    return torch.stack(tokens, dim=1)


@dataclass
class Hypothesis:
    """One beam-search result: the generated `tokens` (EOS included if it ended), the summed
    log-probability `logprob`, and `score = logprob / len(tokens) ** length_penalty` (fairseq's)."""

    tokens: list[int]
    logprob: float
    score: float


@torch.no_grad()
def beam_search(model, cache, prompt: torch.Tensor, max_new_tokens: int, eos_id: int, *, beam_size: int = 5,
                length_penalty: float = 1.0, n_best: int = 1, prompt_mask: torch.Tensor | None = None
                ) -> list[list[Hypothesis]]:
    """Keep the `beam_size` best partial outputs of each row; return its `n_best` finished hypotheses,
    best first.

    Per step, the 2k best extensions of the k beams are ranked: those ending in EOS among the top k
    are finished (fairseq's rule), the best k others continue. A row is done once it has k finished
    hypotheses; at the length budget the surviving beams finish as they are. `length_penalty` > 0
    favours longer outputs (scores are divided by length ** length_penalty); 0 ranks by raw log-prob.
    """
    if n_best > beam_size:
        raise ValueError(f"n_best={n_best} cannot exceed beam_size={beam_size}")
    B, K = prompt.shape[0], beam_size
    device = prompt.device
    logits = _next_logits(model, prompt, cache, prompt_mask)
    V = logits.shape[-1]
    cache.reorder(torch.arange(B, device=device).repeat_interleave(K))
    logprobs = F.log_softmax(logits, dim=-1).repeat_interleave(K, dim=0)  # (B*K, V)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: extend only the first
    tokens = torch.empty(B * K, 0, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=device)
    n_cand = min(2 * K, K * V)
    offsets = (torch.arange(B, device=device) * K)[:, None]

    def finish(row: int, seq: list[int], logprob: float) -> None:
        finished[row].append(Hypothesis(seq, logprob, logprob / max(len(seq), 1) ** length_penalty))

    for step in range(max_new_tokens):
        if step > 0:
            logprobs = F.log_softmax(_next_logits(model, tokens[:, -1:], cache), dim=-1)
        candidates = (scores[:, :, None] + logprobs.view(B, K, V)).view(B, K * V)
        top_scores, top_index = candidates.topk(n_cand, dim=-1)  # (B, 2K)
        top_beam, top_token = top_index // V, top_index % V
        is_eos = (top_token == eos_id) & torch.isfinite(top_scores)
        ending = is_eos[:, :K] & ~done[:, None]
        for row, j in ending.nonzero().tolist():
            if len(finished[row]) < K:
                seq = tokens[row * K + top_beam[row, j]].tolist() + [eos_id]
                finish(row, seq, float(top_scores[row, j]))
        # the best K candidates that do not end continue (EOS ones sort after all others)
        rank = torch.arange(n_cand, device=device).expand(B, -1) + is_eos.long() * n_cand
        keep = rank.topk(K, dim=-1, largest=False).indices
        beam_rows = (offsets + top_beam.gather(1, keep)).view(-1)
        scores = top_scores.gather(1, keep).masked_fill(is_eos.gather(1, keep), float("-inf"))
        tokens = torch.cat((tokens[beam_rows], top_token.gather(1, keep).view(-1, 1)), dim=1)
        cache.reorder(beam_rows, cross=False)  # beams never leave their source: its cross keys stay put
        done = torch.tensor([len(f) >= K for f in finished], device=device)
        if bool(done.all()):
            break
    for row in range(B):
        if len(finished[row]) < K:  # out of budget: the surviving beams finish without EOS
            for j in range(K):
                if len(finished[row]) >= K or not torch.isfinite(scores[row, j]):
                    continue
                finish(row, tokens[row * K + j].tolist(), float(scores[row, j]))
        finished[row].sort(key=lambda h: h.score, reverse=True)
    return [f[:n_best] for f in finished]


class Recompute:
    """A decoder-only model behind the generation interface without a KV cache: every step runs the whole
    sequence again. The reference that cached decoding is checked and timed against (greedy and sampling;
    beam search needs a real cache to reorder)."""

    def __init__(self, model):
        self.model = model
        self.config = model.config

    def init_cache(self, batch_size: int) -> dict[str, torch.Tensor | None]:
        return {"ids": None, "mask": None}

    def decode_step(self, tokens: torch.Tensor, cache: dict, attention_mask: torch.Tensor | None = None
                    ) -> torch.Tensor:
        mask = torch.ones_like(tokens, dtype=torch.bool) if attention_mask is None else attention_mask
        cache["ids"] = tokens if cache["ids"] is None else torch.cat((cache["ids"], tokens), dim=1)
        cache["mask"] = mask if cache["mask"] is None else torch.cat((cache["mask"], mask), dim=1)
        full_mask = None if bool(cache["mask"].all()) else cache["mask"]
        return self.model(cache["ids"], full_mask)[:, -1]


def strip_special(ids: list[int], eos_id: int | None, pad_id: int) -> list[int]:
    """Tokens up to (not including) the first EOS, without padding: what a tokenizer should decode."""
    out = []
    for t in ids:
        if t == eos_id:
            break
        if t != pad_id:
            out.append(t)
    return out


def length_sorted_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped longest first so that `len(batch) * longest <= max_tokens` (at least one each)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.no_grad()
def generate_many(model, inputs: Sequence[Sequence[int]], *, eos_id: int, start: int | None = None,
                  suffix: Sequence[int] = (), beam_size: int = 5, length_penalty: float = 1.0, max_len_a: float = 1.2,
                  max_len_b: int = 10, max_tokens: int = 6000) -> list[list[int]]:
    """The new tokens (no EOS, no padding) of every input, in input order; `beam_size=1` is greedy search.

    An encoder-decoder reads each input as its source and decodes from `start` (its BOS); a decoder-only model
    (`start=None`) continues each input followed by `suffix` (e.g. a separator), left-padded. Inputs are sorted
    by length into batches of at most `max_tokens` tokens (`batch * longest * beam_size`); each output is at most
    `max_len_a * len(input) + max_len_b` tokens long, and within the positions a learned table has.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size={beam_size} must be >= 1")
    device, cfg = next(model.parameters()).device, model.config
    prompts = [[*x, *suffix] or [eos_id] for x in inputs]
    counted = [max(len(p) - len(suffix), 1) if start is not None else len(p) - len(suffix) for p in prompts]
    was_training = model.training
    model.eval()
    out: list[list[int]] = [[] for _ in inputs]
    for batch in length_sorted_batches([len(p) for p in prompts], max(max_tokens // beam_size, 1)):
        width = max(len(prompts[i]) for i in batch)
        budget = int(max_len_a * max(counted[i] for i in batch) + max_len_b)
        rows = [torch.tensor(prompts[i]) for i in batch]
        if start is not None:  # right-padded sources, a column of start tokens
            src = torch.stack([F.pad(r, (0, width - len(r)), value=cfg.pad_id) for r in rows]).to(device)  # (B, S)
            cache, mask, room = model.init_cache(src), None, cfg.max_len - 1
            prompt = torch.full((len(batch), 1), start, dtype=torch.long, device=device)  # (B, 1)
        else:  # left-padded prompts, continued
            prompt = torch.stack([F.pad(r, (width - len(r), 0), value=cfg.pad_id) for r in rows]).to(device)
            cache, mask, room = model.init_cache(len(batch)), prompt != cfg.pad_id, cfg.max_len - width
        if cfg.positional == "learned":
            budget = min(budget, room)
        if beam_size == 1:
            found = greedy(model, cache, prompt, budget, eos_id, prompt_mask=mask).tolist()  # (B, n)
        else:
            found = [h[0].tokens for h in beam_search(model, cache, prompt, budget, eos_id, beam_size=beam_size,
                                                      length_penalty=length_penalty, prompt_mask=mask)]
        for i, row in zip(batch, found, strict=True):  # each row within its own length budget
            out[i] = strip_special(row[: int(max_len_a * counted[i] + max_len_b)], eos_id, cfg.pad_id)
    model.train(was_training)
    return out
