"""Parameter groups (what gets weight decay) and decoupled weight decay."""

from __future__ import annotations

import torch
from torch import nn

from transformers_zoo.training import build_optimizer, param_groups, split_decay


class ScaleNorm(nn.Module):
    """A norm with a 2-D gain: excluded from decay by its class name, not by its shape."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * x / x.norm(dim=-1, keepdim=True)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.scale = ScaleNorm(4)
        self.rms = nn.RMSNorm(4)
        self.other = nn.Linear(4, 3, bias=False)
        self.frozen = nn.Linear(4, 4, bias=False)
        self.frozen.weight.requires_grad_(False)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied


def test_split_decay_by_module_type_shape_and_tying():
    decay, no_decay = split_decay(Net())
    assert decay == ["proj.weight", "other.weight"]
    assert sorted(no_decay) == sorted(
        ["embed.weight", "proj.bias", "norm.weight", "norm.bias", "scale.gain", "rms.weight"]
    )
    assert "head.weight" not in decay + no_decay  # the tied tensor is listed once, under its first name


def test_param_groups_cover_each_trainable_tensor_once():
    net = Net()
    groups = param_groups(net, weight_decay=0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert len(ids) == len(set(ids)) == len(trainable) and set(ids) == trainable
    assert id(net.head.weight) in {id(p) for p in groups[1]["params"]}


def test_adamw_decay_is_decoupled_and_group_specific():
    net = Net()
    opt = build_optimizer(net, lr=0.1, weight_decay=0.5)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)  # Adam's update is 0: only decoupled decay can move a weight
    opt.step()
    torch.testing.assert_close(net.proj.weight, before["proj.weight"] * (1 - 0.1 * 0.5), rtol=0, atol=1e-7)
    torch.testing.assert_close(net.embed.weight, before["embed.weight"], rtol=0, atol=0)
    torch.testing.assert_close(net.norm.weight, before["norm.weight"], rtol=0, atol=0)
    assert isinstance(opt, torch.optim.AdamW)


def test_our_models_decay_only_matrices_of_linear_layers():
    from transformers_zoo import DecoderOnly, EncoderDecoder, ModelConfig

    cfg = ModelConfig(vocab_size=50, d_model=16, n_heads=2, n_layers=1, positional="learned")
    for model in (DecoderOnly(cfg), EncoderDecoder(cfg)):
        decay, no_decay = split_decay(model)
        params = dict(model.named_parameters())
        assert all(params[n].ndim == 2 and "embed" not in n and "positional" not in n for n in decay)
        assert any("embed" in n for n in no_decay) and any("positional.weight" in n for n in no_decay)
        assert not any("lm_head" in n for n in decay)  # tied to the embedding: listed once, not decayed
