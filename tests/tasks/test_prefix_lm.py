"""Decoder-only translation with the source as a prefix (tasks/translation/prefix_lm.py): labels, batching, search."""

from types import SimpleNamespace

import torch

from transformers_zoo import DecoderOnly, ModelConfig
from transformers_zoo.batching import IGNORE_INDEX
from transformers_zoo.generation import greedy, strip_special
from transformers_zoo.tasks.translation.prefix_lm import PrefixFormat, PrefixLMCollator
from transformers_zoo.tokenizers import EOS, PAD, SEP


def test_collator_scores_only_the_target():
    batch = PrefixLMCollator()([([10, 11, 12, EOS], [20, 21]), ([13, EOS], [22, 23, 24])])
    assert batch["input_ids"].tolist() == [[10, 11, 12, SEP, 20, 21], [13, SEP, 22, 23, 24, PAD]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 20, 21, EOS],
                                        [IGNORE_INDEX, 22, 23, 24, EOS, IGNORE_INDEX]]


def test_loss_counts_target_tokens_and_padding_changes_nothing():
    torch.manual_seed(0)
    model = DecoderOnly(ModelConfig(vocab_size=40, d_model=32, n_heads=4, n_layers=2, dropout=0.0)).eval()
    a, b = ([10, 11, 12, EOS], [20, 21]), ([13, EOS], [22, 23, 24])
    loss_ab, n_ab = PrefixFormat.loss(model, PrefixLMCollator()([a, b]))
    loss_a, n_a = PrefixFormat.loss(model, PrefixLMCollator()([a]))
    loss_b, n_b = PrefixFormat.loss(model, PrefixLMCollator()([b]))
    assert int(n_ab) == 7 and int(n_a) + int(n_b) == 7
    assert torch.allclose(loss_ab, loss_a + loss_b, atol=1e-4)


def test_generation_restores_order_and_beam_one_is_greedy():
    torch.manual_seed(0)
    model = DecoderOnly(ModelConfig(vocab_size=40, d_model=32, n_heads=4, n_layers=2, dropout=0.0)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(10)
    sources = [[10, 11, 12, 13, EOS], [14, EOS], [15, 16, EOS]]
    tok = SimpleNamespace(eos_id=EOS)  # all the search reads of the target tokenizer

    def generate_prefix_ids(sources, **search):
        return PrefixFormat.generate(model, sources, tok, **search)

    batched = generate_prefix_ids(sources, beam_size=1, max_len_b=6)
    beam1 = generate_prefix_ids(sources, beam_size=1, max_len_b=6)
    assert batched == beam1
    for src, out in zip(sources, batched, strict=True):
        prompt = torch.tensor([[*src[:-1], SEP]])
        alone = greedy(model, model.init_cache(1), prompt, int(1.2 * (len(src) - 1) + 6), EOS)
        assert out == strip_special(alone[0].tolist(), EOS, PAD)
    beams = generate_prefix_ids(sources, beam_size=3, max_len_b=6)
    assert len(beams) == 3 and all(isinstance(t, int) for row in beams for t in row)
