"""LoRA: only the adapters train, an adapted model starts as the model it wraps, and merging gives a plain model
whose logits equal the adapted one's; new vocabulary rows (chat markers) start as the mean row, tied or not."""

import pytest
import torch

from transformers_zoo import DecoderOnly
from transformers_zoo.config import ModelConfig
from transformers_zoo.models.decoder_only import grow_vocab
from transformers_zoo.modules.lora import LoRALinear, add_lora, lora_parameter_count, merge_lora

CONFIG = ModelConfig(vocab_size=50, d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, max_len=64, positional="rope",
                     norm="rmsnorm", ffn="swiglu", bias=False, tie_embeddings=True, dropout=0.0)


def model(**changes) -> DecoderOnly:
    torch.manual_seed(0)
    return DecoderOnly(CONFIG.replace(**changes)).eval()


def test_only_adapters_train_and_start_as_the_wrapped_model():
    plain, adapted = model(), model()
    ids = torch.randint(4, 50, (2, 12))
    names = add_lora(adapted, ("qkv", "out", "gate_up"), rank=4, alpha=8)
    assert len(names) == 2 * 3 and all(isinstance(adapted.get_submodule(n), LoRALinear) for n in names)
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_a", "lora_b")) for n in trainable)
    assert sum(p.numel() for p in adapted.parameters() if p.requires_grad) == lora_parameter_count(adapted)
    # qkv: (32 -> 32 + 2 * 16) and out (32 -> 32), gate_up (32 -> 2 * ffn) per layer, rank 4
    qkv, out = 4 * (32 + 64), 4 * (32 + 32)
    gate_up = 4 * (32 + adapted.stack.layers[0].ffn.gate_up.out_features)
    assert lora_parameter_count(adapted) == 2 * (qkv + out + gate_up)
    assert torch.equal(adapted(ids), plain(ids))  # B starts at zero


def test_merged_model_has_the_plain_keys_and_the_same_logits():
    adapted = model(tie_embeddings=False)
    add_lora(adapted, ("qkv", "out", "down"), rank=4, alpha=16)
    with torch.no_grad():  # as if trained: every adapter moved
        for m in adapted.modules():
            if isinstance(m, LoRALinear):
                m.lora_b.normal_(std=0.05)
    ids = torch.randint(4, 50, (3, 16))
    before = adapted(ids)
    merged = merge_lora(adapted)
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    plain = model(tie_embeddings=False)
    assert merged.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(merged.state_dict())
    assert torch.allclose(plain(ids), before, atol=1e-5, rtol=0)
    assert not torch.allclose(plain(ids), model(tie_embeddings=False)(ids), atol=1e-3)  # the update is in there


def test_unknown_targets_name_the_linear_layers():
    with pytest.raises(ValueError, match="its linear layers: .*qkv"):
        add_lora(model(), ("q_proj",), rank=2, alpha=4)


@pytest.mark.parametrize("tied", [True, False])
def test_grow_vocab_keeps_old_rows_and_adds_mean_rows(tied):
    small = model(tie_embeddings=tied)
    big = grow_vocab(small, 52)
    assert big.config.vocab_size == 52 and (big.lm_head.weight is big.embed.weight) == tied
    assert torch.equal(big.embed.weight[:50], small.embed.weight)
    assert torch.allclose(big.embed.weight[50], small.embed.weight.mean(0))
    assert torch.allclose(big.lm_head.weight[51], small.lm_head.weight.mean(0))
    ids = torch.randint(4, 50, (2, 10))
    assert torch.allclose(big(ids)[..., :50], small(ids), atol=1e-6)
    assert grow_vocab(small, 50) is small
