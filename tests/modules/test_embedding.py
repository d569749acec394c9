"""Positional schemes: formulas and the properties they exist for."""

import math

import pytest
import torch

from transformers_zoo.modules import ALiBiPositional, RotaryPositional, SinusoidalPositional, apply_rotary
from transformers_zoo.modules.embedding import alibi_slopes, relative_buckets


def test_sinusoidal_matches_the_paper():
    d = 16
    pe = SinusoidalPositional(d).add(torch.zeros(1, 50, d), torch.arange(50)[None])[0]
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert math.isclose(pe[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-5)
            assert math.isclose(pe[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-5)


def test_rope_scores_depend_only_on_distance():
    torch.manual_seed(0)
    rope = RotaryPositional(8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i, j):
        cq, sq = rope.rotary(torch.tensor([[i]]))
        ck, sk = rope.rotary(torch.tensor([[j]]))
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum().item()

    assert math.isclose(score(3, 1), score(10, 8), rel_tol=1e-4)
    assert math.isclose(score(0, 0), (q * k).sum().item(), rel_tol=1e-5)
    assert not math.isclose(score(3, 1), score(3, 2), rel_tol=1e-3)
    x = torch.randn(1, 1, 4, 8)  # rotation keeps norms
    c, s = rope.rotary(torch.arange(4)[None])
    assert torch.allclose(apply_rotary(x, c, s).norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_alibi_slopes_and_bias():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert len(alibi_slopes(6)) == 6  # non power of two: the paper's interleaving
    bias = ALiBiPositional(8).bias(torch.arange(4)[None], torch.arange(4)[None])
    assert bias.shape == (1, 8, 4, 4)
    assert bias[0, 0, 3, 0].item() == -0.5 * 3


def test_relative_buckets_t5_values():
    rel = torch.tensor([0, 1, -1, -7, -8, -127, -1000, 1000])
    got = relative_buckets(rel, bidirectional=True, n_buckets=32, max_distance=128).tolist()
    # exact buckets below 8, log buckets up to 128, then the last bucket of each side
    assert got == [0, 17, 1, 7, 8, 15, 15, 31]
    causal = relative_buckets(torch.tensor([0, -1, -15, -16, -5000, 3]), False, 32, 128).tolist()
    assert causal == [0, 1, 15, 16, 31, 0]


def test_split_sinusoidal_layout_is_the_interleaved_one_regrouped():
    d, positions = 16, torch.arange(30)[None]
    interleaved = SinusoidalPositional(d).table(positions)
    split = SinusoidalPositional(d, "split").table(positions)
    assert torch.equal(split, torch.cat((interleaved[..., 0::2], interleaved[..., 1::2]), dim=-1))


def test_learned_offset_skips_rows():
    from transformers_zoo.modules import LearnedPositional

    pos = LearnedPositional(10, 4, offset=2)
    assert pos.weight.shape == (12, 4)
    out = pos.add(torch.zeros(1, 3, 4), torch.arange(3)[None])
    assert torch.equal(out[0], pos.weight[2:5])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_frequencies_stay_float32_when_the_model_is_cast(dtype):
    rope, sinusoidal = RotaryPositional(64, 10000.0), SinusoidalPositional(32)
    positions = torch.arange(2000, 2048)[None]
    cos, sin = rope.rotary(positions)
    table = sinusoidal.table(positions)
    rope.to(dtype)
    sinusoidal.to(dtype)
    assert rope.inv_freq.dtype == sinusoidal.inv_freq.dtype == torch.float32
    cast_cos, cast_sin = rope.rotary(positions)
    # rounded to 8 (bf16) or 11 (fp16) bits, frequencies would miss these angles by up to radians
    assert torch.equal(cast_cos, cos) and torch.equal(cast_sin, sin) and torch.equal(sinusoidal.table(positions), table)
    frozen = torch.nn.Module()
    frozen.register_buffer("f", RotaryPositional(64, 10000.0).inv_freq.clone())
    rounded = frozen.to(dtype).f.float()
    assert float((positions[0, -1] * (rounded - rope.inv_freq)).abs().max()) > 0.1  # what the cast alone does
