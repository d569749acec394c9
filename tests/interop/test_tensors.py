"""interop.tensors, the toolkit every converter is written with: tables read and written, errors, special ids."""

import pytest
import torch

from transformers_zoo import ModelConfig
from transformers_zoo.interop import ConversionError, generation_ids
from transformers_zoo.interop.tensors import gather, scatter, special_ids, special_ids_to_hf, take

CFG = ModelConfig(vocab_size=11, d_model=8, n_heads=2, n_kv_heads=1, n_layers=1, positional="rope",
                  norm="rmsnorm", ffn="swiglu", bias=False, d_ff=16)


def test_take_removes_and_checks_the_shape():
    tensors = {"a": torch.ones(2, 3, dtype=torch.bfloat16)}
    with pytest.raises(ConversionError, match=r"^tensor 'a' has shape \(2, 3\), expected \(3, 2\)"):
        take(dict(tensors), "a", 3, 2)
    assert take(tensors, "a", 2, 3).dtype == torch.float32 and not tensors
    with pytest.raises(ConversionError, match=r"^missing tensor 'a'$"):
        take(tensors, "a", 2, 3)


def test_gather_splits_rows_transposes_and_scatter_inverts_it():
    """q, k, v of unequal rows (GQA) concatenated into our qkv; a transposed (Conv1D) weight; a tied name
    read twice is one tensor; scatter gives back what gather read."""
    hd, rows = CFG.head_dim, lambda n, total: [8, 4, 4] if n == 3 else [total // n] * n
    hf = {"q": torch.randn(8, 8), "k": torch.randn(4, 8), "v": torch.randn(4, 8), "emb": torch.randn(11, 8),
          "down_t": torch.randn(16, 8)}
    table = [("stack.layers.0.self_attn.qkv.weight", ("q", "k", "v")), ("embed.weight", ("emb",)),
             ("lm_head.weight", ("emb",)), ("stack.layers.0.ffn.down.weight", ("down_t",))]
    state = gather(dict(hf), table, CFG, "decoder_only", rows=rows, transposed={"down_t"})
    assert state["stack.layers.0.self_attn.qkv.weight"].shape == (8 + 2 * hd, 8)
    assert state["embed.weight"] is state["lm_head.weight"]
    assert torch.equal(state["stack.layers.0.ffn.down.weight"], hf["down_t"].t())
    back = scatter(state, table, rows=rows, transposed={"down_t"})
    assert all(torch.equal(back[n], t) for n, t in hf.items())
    with pytest.raises(ConversionError, match=r"^tensor 'q' has shape \(8, 8\), expected \(5, 8\)"):
        gather(dict(hf), table, CFG, "decoder_only")  # equal parts of 16 rows: 5 each


def test_special_ids_one_layout_both_ways():
    hf = {"model_type": "bart", "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": [2, 3],
          "decoder_start_token_id": 2, "forced_eos_token_id": 2}
    fields = special_ids(hf, vocab_size=11)
    assert fields == {"pad_id": 1, "extra": {"hf_model_type": "bart", "bos_id": 0, "eos_id": 2, "decoder_start_id": 2,
                                             "forced_eos_id": 2}}
    cfg = CFG.replace(**fields)
    assert special_ids_to_hf(cfg) == {"bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2,
                                      "forced_eos_token_id": 2, "pad_token_id": 1}
    assert generation_ids(cfg) == {"decoder_start": 2, "eos": 2, "pad": 1}
    assert special_ids({"model_type": "gpt2", "eos_token_id": 10}, 11)["pad_id"] == 10  # no pad token: EOS pads


def test_configs_saved_with_the_old_extra_layout_still_export():
    """Run directories written before the one layout keep HF's names under extra["hf"]."""
    cfg = CFG.replace(pad_id=1, extra={"hf": {"model_type": "marian", "decoder_start_token_id": 1, "eos_token_id": 0}})
    assert generation_ids(cfg) == {"decoder_start": 1, "eos": 0, "pad": 1}
    assert special_ids_to_hf(cfg)["decoder_start_token_id"] == 1
