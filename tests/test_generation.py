"""Search: greedy, sampling and beam search through the shared model interface."""

import pytest
import torch

from transformers_zoo import DecoderOnly, EncoderDecoder, ModelConfig
from transformers_zoo.generation import (
    beam_search,
    filter_logits,
    generate_many,
    greedy,
    iter_tokens,
    length_sorted_batches,
    sample,
    strip_special,
)

EOS = 3
CFG = ModelConfig(vocab_size=24, d_model=32, n_heads=4, n_layers=2, dropout=0.0)


def sharp(model_cls, seed):
    """A random model with large weights, so its distributions are peaked and outputs end at times."""
    torch.manual_seed(seed)
    model = model_cls(CFG).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(15)
    return model


def start(model, seed=0, B=3):
    """(cache factory, prompt) for either family."""
    g = torch.Generator().manual_seed(seed)
    if isinstance(model, EncoderDecoder):
        src = torch.randint(4, 24, (B, 6), generator=g)
        return (lambda: model.init_cache(src)), torch.full((B, 1), 2)
    prompt = torch.randint(4, 24, (B, 4), generator=g)
    return (lambda: model.init_cache(B)), prompt


def full_logprob(model, prompt_or_src, tokens):
    """Log-probability of `tokens` under a full (uncached) forward, the score beams claim."""
    if isinstance(model, EncoderDecoder):
        src = prompt_or_src
        tgt = torch.tensor([[2] + tokens])
        logits = model(src, tgt[:, :-1])
    else:
        seq = torch.cat((prompt_or_src, torch.tensor([tokens])), 1)
        logits = model(seq[:, :-1])[:, prompt_or_src.shape[1] - 1:]
    logits[..., CFG.pad_id] = float("-inf")  # generation never emits padding
    return logits.log_softmax(-1)[0, torch.arange(len(tokens)), torch.tensor(tokens)].sum().item()


FAMILIES = [DecoderOnly, EncoderDecoder]


@pytest.mark.parametrize("model_cls", FAMILIES)
@pytest.mark.parametrize("seed", range(4))
def test_beam_one_equals_greedy(model_cls, seed):
    model = sharp(model_cls, seed)
    make_cache, prompt = start(model, seed)
    g = greedy(model, make_cache(), prompt, 15, eos_id=EOS)
    beams = beam_search(model, make_cache(), prompt, 15, eos_id=EOS, beam_size=1)
    for i in range(prompt.shape[0]):
        row = g[i].tolist()
        row = row[: row.index(EOS) + 1] if EOS in row else row
        assert beams[i][0].tokens == row


@pytest.mark.parametrize("model_cls", FAMILIES)
@pytest.mark.parametrize("seed", range(4))
def test_nbest_sorted_and_best_beam_not_worse_than_greedy(model_cls, seed):
    model = sharp(model_cls, seed)
    make_cache, prompt = start(model, seed)
    g = greedy(model, make_cache(), prompt, 12, eos_id=EOS)
    beams = beam_search(model, make_cache(), prompt, 12, eos_id=EOS, beam_size=5, n_best=5, length_penalty=0.0)
    for i, nbest in enumerate(beams):
        scores = [h.score for h in nbest]
        assert scores == sorted(scores, reverse=True) and len(nbest) == 5
        row = g[i].tolist()
        row = row[: row.index(EOS) + 1] if EOS in row else row
        context = prompt[i: i + 1] if model_cls is DecoderOnly else None
        if context is None:  # the source this row was encoded from
            context = torch.randint(4, 24, (3, 6), generator=torch.Generator().manual_seed(seed))[i: i + 1]
        greedy_lp = full_logprob(model, context, row)
        assert nbest[0].logprob >= greedy_lp - 1e-4
        # the scores beam search reports are the model's log-probabilities of its outputs
        assert abs(full_logprob(model, context, nbest[0].tokens) - nbest[0].logprob) < 1e-3


def test_length_penalty_normalises_scores():
    model = sharp(DecoderOnly, 1)
    make_cache, prompt = start(model, 1)
    for lp in (0.0, 1.0):
        for h in beam_search(model, make_cache(), prompt, 10, eos_id=EOS, beam_size=3, n_best=3, length_penalty=lp)[0]:
            assert abs(h.score - h.logprob / len(h.tokens) ** lp) < 1e-6


@pytest.mark.parametrize("model_cls", FAMILIES)
def test_top_k_one_sampling_equals_greedy(model_cls):
    model = sharp(model_cls, 2)
    make_cache, prompt = start(model, 2)
    g = greedy(model, make_cache(), prompt, 10, eos_id=EOS)
    s = sample(model, make_cache(), prompt, 10, eos_id=EOS, top_k=1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(g, s)


def test_sampling_is_reproducible_and_varies_with_seed():
    torch.manual_seed(0)
    model = DecoderOnly(CFG).eval()  # unsharpened: a flat distribution
    make_cache, prompt = start(model)
    runs = [sample(model, make_cache(), prompt, 20, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_generation_stops_when_all_rows_finish_and_pads_after_eos():
    model = sharp(DecoderOnly, 3)
    make_cache, prompt = start(model, 3)
    calls = []
    original = model.decode_step
    model.decode_step = lambda *a, **k: calls.append(1) or original(*a, **k)
    out = greedy(model, make_cache(), prompt, 50, eos_id=EOS)
    assert len(calls) == out.shape[1] or (out == EOS).any(1).all()
    for row in out.tolist():
        if EOS in row:
            assert all(t == CFG.pad_id for t in row[row.index(EOS) + 1:])
    if (out == EOS).any(1).all():
        assert out.shape[1] < 50


def test_left_padded_prompts_generate_like_single_prompts():
    model = sharp(DecoderOnly, 4)
    a, b = torch.tensor([5, 6, 7, 8, 9]), torch.tensor([10, 11])
    batch = torch.stack((a, torch.cat((torch.zeros(3, dtype=torch.long), b))))
    out = greedy(model, model.init_cache(2), batch, 8, prompt_mask=batch != 0)
    assert torch.equal(out[0], greedy(model, model.init_cache(1), a[None], 8)[0])
    assert torch.equal(out[1], greedy(model, model.init_cache(1), b[None], 8)[0])


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    kept = torch.isfinite(filter_logits(logits, top_p=0.7))[0].tolist()
    assert kept == [True, True, False, False]  # 0.5 < 0.7, 0.5 + 0.3 reaches it
    assert torch.isfinite(filter_logits(logits, top_p=0.01))[0].tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="temperature"):
        filter_logits(logits, temperature=0)


def test_iter_tokens_streams():
    model = sharp(DecoderOnly, 0)
    make_cache, prompt = start(model)
    streamed = torch.stack(list(iter_tokens(model, make_cache(), prompt, lambda logits: logits.argmax(-1), 6)), 1)
    assert torch.equal(streamed, greedy(model, make_cache(), prompt, 6))


def test_recompute_reference_equals_cached_decoding():
    from transformers_zoo.generation import Recompute

    model = sharp(DecoderOnly, 5)
    make_cache, prompt = start(model, 5)
    ref = Recompute(model)
    assert torch.equal(greedy(model, make_cache(), prompt, 12), greedy(ref, ref.init_cache(3), prompt, 12))
    g = torch.Generator().manual_seed(0)
    cached = sample(model, make_cache(), prompt, 12, top_p=0.9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cached, sample(ref, ref.init_cache(3), prompt, 12, top_p=0.9, generator=g))


# ------------------------------------------------------------------------ batched, length-budgeted search

SOURCES = [[5, 6, 7, EOS], [8, EOS], [9, 10, 11, 12, 13, 14, 15, EOS], [16, 17, EOS], [18, 19, 20, 21, EOS], [4]]


def one_by_one(model, inputs, beam_size, suffix=(), a=1.0, b=4):
    """Each input searched alone (no batching, no padding), cut to its own budget a * len + b."""
    out = []
    for x in inputs:
        budget = int(a * len(x) + b)
        if isinstance(model, EncoderDecoder):
            cache, prompt, mask = model.init_cache(torch.tensor([x])), torch.tensor([[2]]), None
        else:
            cache, prompt, mask = model.init_cache(1), torch.tensor([[*x, *suffix]]), None
        if beam_size == 1:
            row = greedy(model, cache, prompt, budget, EOS, prompt_mask=mask)[0].tolist()
        else:
            row = beam_search(model, cache, prompt, budget, EOS, beam_size=beam_size)[0][0].tokens
        out.append(strip_special(row, EOS, CFG.pad_id))
    return out


@pytest.mark.parametrize("beam_size", [1, 3])
@pytest.mark.parametrize("model_cls", [EncoderDecoder, DecoderOnly])
def test_generate_many_equals_search_one_by_one(model_cls, beam_size):
    """Length-sorted batches (several, under a small token budget), padding (right for sources, left for
    prompts) and the per-row length budgets change nothing: each output is that input's own search, in input
    order; beam 1 is greedy."""
    model = sharp(model_cls, seed=1).double()
    kwargs = dict(eos_id=EOS, beam_size=beam_size, max_len_a=1.0, max_len_b=4, max_tokens=12 * beam_size)
    if model_cls is EncoderDecoder:
        got = generate_many(model, SOURCES, start=2, **kwargs)
        expected = one_by_one(model, SOURCES, beam_size)
    else:
        got = generate_many(model, SOURCES, suffix=(22,), **kwargs)
        expected = one_by_one(model, SOURCES, beam_size, suffix=(22,))
    assert got == expected
    assert len({tuple(x) for x in got}) > 2  # outputs differ, so a wrong order would show


def test_length_sorted_batches_respect_the_budget():
    lengths = [3, 9, 1, 4, 4, 8, 2]
    batches = length_sorted_batches(lengths, max_tokens=12)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 12 or len(b) == 1 for b in batches)
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)
