"""The three families on CUDA against the same weights on the CPU: forward (float32), cached decoding equals a
full forward on the GPU, and a bf16-autocast training step that lowers the loss. Marked `cuda`; skipped with a
reason where no GPU is present (scripts/gpu_check.sh runs them on one)."""

import pytest
import torch

from transformers_zoo import DecoderOnly, EncoderDecoder, EncoderOnly, ModelConfig
from transformers_zoo.generation import greedy

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]


def config(**changes) -> ModelConfig:
    return ModelConfig(**{**dict(vocab_size=97, d_model=64, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=128, max_len=64,
                                 dropout=0.0, positional="rope", norm="rmsnorm", ffn="swiglu"), **changes})


def ids(b: int, t: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(4, 97, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", [DecoderOnly, EncoderOnly])
def test_forward_on_cuda_equals_cpu(family):
    torch.manual_seed(0)
    model = family(config()).eval()
    x = ids(3, 20)
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[1, 15:] = False  # a padded row
    with torch.no_grad():
        cpu = model(x, mask)
        gpu = model.cuda()(x.cuda(), mask.cuda()).cpu()
    keep = mask[..., None].expand_as(cpu)  # padded positions may differ; real ones may not
    torch.testing.assert_close(gpu[keep], cpu[keep], atol=2e-4, rtol=2e-4)


def test_encoder_decoder_cached_greedy_on_cuda_equals_cpu():
    torch.manual_seed(0)
    model = EncoderDecoder(config(positional="sinusoidal", norm="layernorm", ffn="gelu", n_kv_heads=None)).eval()
    src = ids(2, 12, seed=1)
    prompt = torch.full((2, 1), 1)
    with torch.no_grad():
        cpu = greedy(model, model.init_cache(src), prompt, 10)
        model = model.cuda()
        gpu = greedy(model, model.init_cache(src.cuda()), prompt.cuda(), 10).cpu()
    assert torch.equal(cpu, gpu)


def test_decoder_kv_cache_equals_full_forward_on_cuda():
    torch.manual_seed(0)
    model = DecoderOnly(config()).cuda().eval()
    x = ids(2, 16).cuda()
    with torch.no_grad():
        full = model(x)
        cache = model.init_cache(2)
        steps = [model.decode_step(x[:, i:i + 1], cache) for i in range(16)]  # (B, V) each
    torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-4, rtol=1e-4)


def test_bf16_autocast_training_lowers_the_loss():
    torch.manual_seed(0)
    model = DecoderOnly(config()).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = ids(8, 32).cuda()
    losses = []
    for _ in range(30):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses[-1] < 0.5 * losses[0], losses
