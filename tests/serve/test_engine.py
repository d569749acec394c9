"""Continuous batching: stacked caches of different lengths, and the engine's answers against each request alone."""

from __future__ import annotations

import threading

import pytest
import torch

from transformers_zoo import DecoderOnly, ModelConfig
from transformers_zoo.generation import greedy, sample
from transformers_zoo.modules import KVCache
from transformers_zoo.modules.embedding import POSITIONALS
from transformers_zoo.serve.engine import Engine, QueueFull


def tiny_lm(positional: str = "rope", seed: int = 0, **overrides) -> DecoderOnly:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=41, d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=64, max_len=96,
                      dropout=0.0, positional=positional, relative_buckets=8, relative_max_distance=16, **overrides)
    return DecoderOnly(cfg).eval()


def prompt(n: int, seed: int) -> list[int]:
    return torch.randint(7, 41, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize("positional", list(POSITIONALS))
def test_stacked_caches_decode_each_row_as_alone(positional):
    model = tiny_lm(positional)
    prompts = [prompt(9, 0), prompt(3, 1), prompt(6, 2)]
    caches = [model.init_cache(1) for _ in prompts]
    for p, c in zip(prompts, caches, strict=True):
        model.decode_step(torch.tensor([p]), c)
    stacked = KVCache.stack(caches)
    nxt = torch.tensor([[11], [12], [13]])
    out = model.decode_step(nxt, stacked)
    for i, p in enumerate(prompts):
        alone = model(torch.tensor([p + [11 + i]]))[0, -1]
        assert (out[i] - alone).abs().max() < 1e-4
    # the longest row leaves: trimming drops the columns only it used, the others decode the same
    stacked.reorder(torch.tensor([1, 2]))
    stacked.trim()
    assert stacked.length == 6 + 1
    out = model.decode_step(torch.tensor([[14], [15]]), stacked)
    for row, i in enumerate((1, 2)):
        alone = model(torch.tensor([prompts[i] + [11 + i, 14 + row]]))[0, -1]
        assert (out[row] - alone).abs().max() < 1e-4


@pytest.fixture
def make_engine():
    """Engines closed after the test."""
    engines = []

    def make(model, **kwargs) -> Engine:
        engines.append(Engine(model, **kwargs))
        return engines[-1]

    yield make
    for engine in engines:
        engine.close()


def collect(engine: Engine, p: list[int], n: int, **options) -> tuple[list[int], threading.Event, list]:
    tokens, finish, done = [], [], threading.Event()

    def on_event(token, reason):
        if token is not None:
            tokens.append(token)
        else:
            finish.append(reason)
            done.set()

    engine.generate(p, n, on_event, **options)
    return tokens, done, finish


def test_requests_joining_at_different_steps_get_their_greedy_answer_alone(make_engine):
    model = tiny_lm("rope")
    engine = make_engine(model, max_batch=8, max_queue=16)
    prompts = [prompt(5 + 3 * i, 10 + i) for i in range(5)]
    lengths = [30, 12, 25, 8, 20]
    runs = []
    for p, n in zip(prompts, lengths, strict=True):
        runs.append((p, n, collect(engine, p, n)))
        # let the batch take a few steps before the next request arrives
        target = engine.steps + 3
        while engine.steps < target and engine.running:
            threading.Event().wait(0.002)
    for p, n, (tokens, done, finish) in runs:
        assert done.wait(30)
        alone = greedy(model, model.init_cache(1), torch.tensor([p]), n).tolist()[0]
        assert tokens == alone and finish == ["length"]
    assert engine.max_rows_seen >= 2  # they did share steps


def test_sampling_with_a_seed_matches_generation_sample_and_stop_ids_end_a_request(make_engine):
    model = tiny_lm("learned")
    engine = make_engine(model, max_batch=4, max_queue=4)
    p = prompt(6, 3)
    tokens, done, _ = collect(engine, p, 15, temperature=0.9, top_p=0.8, seed=7)
    assert done.wait(30)
    want = sample(model, model.init_cache(1), torch.tensor([p]), 15, temperature=0.9, top_p=0.8,
                  generator=torch.Generator().manual_seed(7)).tolist()[0]
    assert tokens == want
    greedy_tokens = greedy(model, model.init_cache(1), torch.tensor([p]), 10).tolist()[0]
    stop = greedy_tokens[4]
    tokens, done, finish = collect(engine, p, 10, stop_ids=frozenset({stop}))
    assert done.wait(30)
    assert tokens == greedy_tokens[: greedy_tokens.index(stop)] and finish == ["stop"]


def test_a_pad_id_that_is_a_stop_id_can_end_a_request(make_engine):
    """A checkpoint that pads with its end of turn (pad_id = <|im_end|>) must still be able to end a reply."""
    model = tiny_lm("rope", pad_id=5)
    step = model.decode_step
    bonus = torch.zeros(model.config.vocab_size)
    bonus[5] = 100.0  # the pad token is the model's first choice at every step
    model.decode_step = lambda *a, **k: step(*a, **k) + bonus
    p = prompt(6, 4)
    engine = make_engine(model, max_batch=2, max_queue=2)
    tokens, done, finish = collect(engine, p, 5)
    assert done.wait(30) and finish == ["length"]  # padding is never generated...
    assert tokens == greedy(model, model.init_cache(1), torch.tensor([p]), 5).tolist()[0] and 5 not in tokens
    tokens, done, finish = collect(engine, p, 5, stop_ids=frozenset({5}))
    assert done.wait(30) and tokens == [] and finish == ["stop"]  # ...unless it ends the turn


def test_queue_bound_and_cancel_frees_the_row(make_engine):
    model = tiny_lm("rope")
    engine = make_engine(model, max_batch=1, max_queue=1)
    first = engine.generate(prompt(4, 0), 80, lambda t, r: None)
    while not engine.running:
        threading.Event().wait(0.002)
    engine.generate(prompt(4, 1), 80, lambda t, r: None)  # waits: the batch is full
    with pytest.raises(QueueFull):
        engine.generate(prompt(4, 2), 80, lambda t, r: None)
    first.cancel()
    for _ in range(5000):  # the waiting one takes the freed row at the next step
        if engine.waiting == 0 and engine.running == 1:
            break
        threading.Event().wait(0.002)
    assert engine.waiting == 0 and engine.running == 1


def test_a_request_that_fails_fails_alone(make_engine):
    model = tiny_lm("learned")  # positions past max_len (96) are an error
    engine = make_engine(model, max_batch=4, max_queue=4)
    good, good_done, good_finish = collect(engine, prompt(5, 0), 10)
    bad, bad_done, bad_finish = collect(engine, prompt(100, 1), 10)
    assert bad_done.wait(30) and good_done.wait(30)
    assert bad == [] and bad_finish[0].startswith("error: ValueError") and "max_len" in bad_finish[0]
    assert good == greedy(model, model.init_cache(1), torch.tensor([prompt(5, 0)]), 10).tolist()[0]
    assert good_finish == ["length"]
