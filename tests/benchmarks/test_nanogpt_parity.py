"""Our DecoderOnly at the nanogpt-cpu preset is nanoGPT's GPT: same weights, same logits and gradients as the
plain reference of `benchmarks/nanogpt_parity.py` (so its comparison measures the training, not the model)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "recipes"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from gpt import NANOGPT_MODEL, NANOGPT_TRAIN  # noqa: E402

from benchmarks.nanogpt_parity import ReferenceGPT, nanogpt_lr  # noqa: E402
from transformers_zoo import DecoderOnly, ModelConfig  # noqa: E402
from transformers_zoo.training.schedules import lr_factor  # noqa: E402


def copy_weights(ours: DecoderOnly, ref: ReferenceGPT) -> None:
    names = {"wte.weight": "embed.weight", "wpe.weight": "stack.positional.weight",
             "ln_f.weight": "stack.final_norm.weight"}
    for i in range(len(ref.blocks)):
        ours_prefix = f"stack.layers.{i}."
        for theirs, mine in (("ln_1", "self_attn_norm"), ("c_attn", "self_attn.qkv"), ("attn_proj", "self_attn.out"),
                             ("ln_2", "ffn_norm"), ("c_fc", "ffn.up"), ("mlp_proj", "ffn.down")):
            names[f"blocks.{i}.{theirs}.weight"] = ours_prefix + mine + ".weight"
    state = ours.state_dict()
    ref_state = ref.state_dict()
    assert set(ref_state) - {"lm_head.weight"} == set(names), sorted(set(ref_state) ^ set(names))
    ref.load_state_dict({**{k: state[v] for k, v in names.items()}, "lm_head.weight": state["embed.weight"]})


def test_same_weights_same_logits_and_gradients() -> None:
    torch.manual_seed(0)
    ours = DecoderOnly(ModelConfig(vocab_size=65, **NANOGPT_MODEL))
    ref = ReferenceGPT(65)
    copy_weights(ours, ref)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    ids = torch.randint(7, 65, (3, 65))  # id 0 is our padding id, masked as a key; real text never has it
    losses = []
    for model in (ours, ref):
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        losses.append((logits, loss))
    torch.testing.assert_close(losses[0][0], losses[1][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.embed.weight.grad, ref.wte.weight.grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(ours.stack.layers[2].ffn.up.weight.grad, ref.blocks[2].c_fc.weight.grad,
                               atol=1e-6, rtol=1e-4)


def test_recipe_schedule_is_nanogpts_to_a_step() -> None:
    """Our cosine schedule with the preset's settings gives nanoGPT's learning rate at every step, up to
    the warm-up's first steps (nanoGPT ramps as (it + 1) / (warmup + 1))."""
    steps, peak = NANOGPT_TRAIN["max_steps"], NANOGPT_TRAIN["lr"]
    factor = lr_factor("cosine", NANOGPT_TRAIN["warmup_steps"], steps, NANOGPT_TRAIN["min_lr_ratio"])
    ours = [peak * factor(done) for done in range(steps)]
    theirs = [nanogpt_lr(it, steps) for it in range(steps)]
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < 2e-5
