"""TransformerBlock against torch.nn.TransformerEncoderLayer with the same weights, pre- and post-norm."""

import pytest
import torch
from torch import nn

from transformers_zoo import ModelConfig
from transformers_zoo.modules.block import build_block


def torch_layer_like(block, cfg: ModelConfig) -> nn.TransformerEncoderLayer:
    """PyTorch's encoder layer holding `block`'s weights (q, k, v stacked in the same order)."""
    layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.ffn_dim, dropout=0.0, activation=cfg.ffn,
                                       layer_norm_eps=cfg.norm_eps, batch_first=True, norm_first=cfg.norm_first)
    pairs = [(layer.self_attn.in_proj_weight, block.self_attn.qkv.weight),
             (layer.self_attn.in_proj_bias, block.self_attn.qkv.bias),
             (layer.self_attn.out_proj.weight, block.self_attn.out.weight),
             (layer.self_attn.out_proj.bias, block.self_attn.out.bias),
             (layer.linear1.weight, block.ffn.up.weight), (layer.linear1.bias, block.ffn.up.bias),
             (layer.linear2.weight, block.ffn.down.weight), (layer.linear2.bias, block.ffn.down.bias),
             (layer.norm1.weight, block.self_attn_norm.weight), (layer.norm1.bias, block.self_attn_norm.bias),
             (layer.norm2.weight, block.ffn_norm.weight), (layer.norm2.bias, block.ffn_norm.bias)]
    with torch.no_grad():
        for theirs, ours in pairs:
            theirs.copy_(ours)
    return layer.eval()


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("ffn", ["relu", "gelu"])
@pytest.mark.parametrize("causal", [False, True])
def test_block_equals_torch_encoder_layer(norm_first, ffn, causal):
    cfg = ModelConfig(vocab_size=11, d_model=32, n_heads=4, d_ff=64, dropout=0.0, norm_first=norm_first, ffn=ffn)
    torch.manual_seed(0)
    block = build_block(cfg, cross=False).eval()
    with torch.no_grad():  # non-trivial norm gains and biases, so a swapped or missing one shows
        for name, p in block.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    layer = torch_layer_like(block, cfg)
    x = torch.randn(2, 7, cfg.d_model)
    key_mask = torch.ones(2, 7, dtype=torch.bool)
    key_mask[1, 5:] = False  # padding at the end of the second row
    ours_mask = key_mask[:, None, None, :]
    causal_mask = None
    if causal:
        causal_mask = torch.ones(7, 7, dtype=torch.bool).tril()
        ours_mask = ours_mask & causal_mask
    ours = block(x, mask=ours_mask)
    # PyTorch's masks say True = masked out, the opposite of ours
    theirs = layer(x, src_mask=None if causal_mask is None else ~causal_mask, src_key_padding_mask=~key_mask)
    real = key_mask[..., None].expand_as(ours)  # PyTorch's fast path may zero padded rows' outputs
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-4)
