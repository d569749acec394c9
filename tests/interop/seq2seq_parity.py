"""Checks every encoder-decoder converter passes against a randomly initialised `transformers` model:
equal logits (with and without source padding), equal greedy generation, and a round trip back into a
fresh HF model. Weights are re-drawn far from HF's init (norm gains != 1, a nonzero logits bias) so a
swapped or forgotten tensor shows."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from transformers_zoo.generation import greedy
from transformers_zoo.interop import ConversionError, generation_ids, load_hf, model_from_hf
from transformers_zoo.interop.files import read_tensors

ATOL = 1e-5


@dataclass
class Case:
    """An HF model and the token ids the checks need."""

    hf_model: torch.nn.Module
    converter: object
    pad: int
    eos: int
    start: int
    src_vocab: int
    tgt_vocab: int

    @property
    def specials(self) -> set[int]:
        return {self.pad, self.eos, self.start}


def make_case(model: torch.nn.Module, converter, tgt_vocab: int | None = None, skip: tuple[str, ...] = ()) -> Case:
    """A `Case` of a freshly built HF `model`, its weights redrawn (see `randomize`)."""
    c = model.config
    return Case(randomize(model, skip=skip), converter, pad=c.pad_token_id, eos=c.eos_token_id,
                start=c.decoder_start_token_id, src_vocab=c.vocab_size, tgt_vocab=tgt_vocab or c.vocab_size)


def randomize(model: torch.nn.Module, seed: int = 0, skip: tuple[str, ...] = ()) -> torch.nn.Module:
    """Redraw every weight (and `final_logits_bias`) of `model`, except names containing one of `skip`."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in [*model.named_parameters(), *model.named_buffers()]:
            if any(s in name for s in skip) or not p.is_floating_point():
                continue
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.15 * noise)
    return model.eval()


def ids(vocab: int, shape: tuple[int, int], avoid: set[int], seed: int) -> torch.Tensor:
    """Random token ids `shape` below `vocab`, none of them in `avoid` (pad, eos, start)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, shape, generator=gen)
    for token in avoid:
        x[x == token] = max(set(range(vocab)) - avoid)
    return x


def source(case: Case, padded: bool, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """`(src (3, 9), attention_mask (3, 9))`, right-padded to lengths 9, 6, 4 when `padded`."""
    src = ids(case.src_vocab, (3, 9), case.specials, seed)
    mask = torch.ones_like(src)
    if padded:
        for row, length in enumerate((9, 6, 4)):
            mask[row, length:] = 0
        src = src.masked_fill(mask == 0, case.pad)
    return src, mask


def target(case: Case, seed: int = 2) -> torch.Tensor:
    """Teacher-forced decoder inputs `(3, 7)`: the start token, then random tokens."""
    tgt = ids(case.tgt_vocab, (3, 7), case.specials, seed)
    tgt[:, 0] = case.start
    return tgt


def hf_logits(model: torch.nn.Module, src: torch.Tensor, mask: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits


def convert(case: Case) -> torch.nn.Module:
    hf = case.hf_model.config.to_dict()
    return model_from_hf(case.converter, hf, dict(case.hf_model.state_dict()))


def check_logits(case: Case, padded: bool) -> None:
    ours = convert(case)
    src, mask = source(case, padded)
    tgt = target(case)
    expected = hf_logits(case.hf_model, src, mask, tgt)
    with torch.no_grad():
        got = ours(src, tgt)  # the source mask comes from pad_id, as a recipe would give it
        cached = ours.init_cache(src)
        steps = torch.stack([ours.decode_step(tgt[:, t : t + 1], cached) for t in range(tgt.shape[1])], dim=1)
    assert expected.std() > 0.05  # logits of a model that is not all zeros
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(steps, expected, atol=ATOL, rtol=0)  # cached decoding agrees too


def check_greedy(case: Case, max_new_tokens: int = 20) -> None:
    ours = convert(case)
    src, mask = source(case, padded=True)
    with torch.no_grad():
        hf_out = case.hf_model.generate(
            input_ids=src, attention_mask=mask, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
            min_length=0, no_repeat_ngram_size=0, repetition_penalty=1.0, forced_bos_token_id=None,
            forced_eos_token_id=None, bad_words_ids=None, suppress_tokens=[case.pad],  # we never emit pad
            decoder_start_token_id=case.start, eos_token_id=case.eos, pad_token_id=case.pad)
    assert bool((hf_out[:, 0] == case.start).all())
    ids = generation_ids(ours.config)  # what a recipe generates with
    assert (ids["decoder_start"], ids["eos"], ids["pad"]) == (case.start, case.eos, case.pad)
    prompt = torch.full((src.shape[0], 1), ids["decoder_start"])
    got = greedy(ours, ours.init_cache(src), prompt, max_new_tokens, eos_id=ids["eos"])
    expected = hf_out[:, 1:]
    width = max(got.shape[1], expected.shape[1])
    pad = lambda x: torch.nn.functional.pad(x, (0, width - x.shape[1]), value=case.pad)
    assert torch.equal(pad(got), pad(expected)), (got, expected)
    assert got.shape[1] > 1


def check_bad_tensor(case: Case, name: str) -> None:
    """A checkpoint file without tensor `name`, or with it misshapen, is refused by `load_hf` with a one-line
    ConversionError naming the file and the tensor (issue 31: T5, BART and Marian gave a bare ValueError
    without the file)."""
    directory = Path(tempfile.mkdtemp())
    case.hf_model.eval().save_pretrained(directory)
    path = directory / "model.safetensors"
    tensors = read_tensors(path)
    assert name in tensors, sorted(tensors)
    for what, value in (("missing tensor", None), ("has shape (3, 1), expected", torch.zeros(3, 1))):
        changed = {n: t.contiguous() for n, t in tensors.items() if n != name}
        if value is not None:
            changed[name] = value
        save_file(changed, str(path))
        with pytest.raises(ConversionError) as err:
            load_hf(directory)
        message = str(err.value)
        assert message.startswith(f"{path}: ") and f"'{name}'" in message and what in message, message
        assert "\n" not in message
    shutil.rmtree(directory)


def check_leftovers(case: Case) -> None:
    """Every tensor of a saved checkpoint is used (or a known buffer): an extra tensor, or a head that
    differs from the embedding under a config that says tied, is refused with one line naming it."""
    directory = Path(tempfile.mkdtemp())
    case.hf_model.eval().save_pretrained(directory)
    load_hf(directory)  # as saved: nothing left over
    tensors = read_tensors(directory / "model.safetensors")
    extra = "model.encoder.layers.0.extra.weight" if "model.shared.weight" in tensors else "encoder.extra.weight"
    for name, value in ((extra, torch.zeros(2)), ("lm_head.weight", None)):
        changed = dict(tensors)
        if value is None:  # an untied head, where config.json says tied
            if not case.converter.config_from_hf(case.hf_model.config.to_dict()).tie_embeddings:
                continue
            table = next(t for n, t in tensors.items() if n.endswith(("shared.weight", "embed_tokens.weight")))
            value = table + 1.0
        changed[name] = value
        save_file({n: t.contiguous() for n, t in changed.items()}, str(directory / "model.safetensors"))
        with pytest.raises(ConversionError, match=f"model.safetensors: unexpected tensor '{re.escape(name)}'"):
            load_hf(directory)
    shutil.rmtree(directory)


def check_round_trip(case: Case) -> None:
    """Ours -> config_to_hf / state_to_hf -> a fresh HF model (strict load) gives our logits."""
    ours = convert(case)
    cfg = ours.config
    hf_config = type(case.hf_model.config)(**case.converter.config_to_hf(cfg))
    fresh = type(case.hf_model)(hf_config).eval()
    fresh.load_state_dict(case.converter.state_to_hf(ours.state_dict(), cfg), strict=True)
    src, mask = source(case, padded=True, seed=5)
    tgt = target(case, seed=6)
    with torch.no_grad():
        got = ours(src, tgt)
    torch.testing.assert_close(hf_logits(fresh, src, mask, tgt), got, atol=ATOL, rtol=0)
    # and again: the converter reads what it wrote
    again = model_from_hf(case.converter, hf_config.to_dict(), dict(fresh.state_dict()))
    for name, t in ours.state_dict().items():
        assert torch.equal(again.state_dict()[name], t), name


def check_saveable(case: Case) -> None:
    """state_to_hf's tensors share no storage except tied names (one tensor): safetensors saves them once
    the tied copies are dropped, and the converter reads the file back."""
    from safetensors.torch import load_file, save_file

    ours = convert(case)
    hf_config = case.converter.config_to_hf(ours.config)
    tensors = case.converter.state_to_hf(ours.state_dict(), ours.config)
    kept, seen = {}, set()
    for name, t in tensors.items():
        if id(t) not in seen:
            seen.add(id(t))
            kept[name] = t
    with tempfile.TemporaryDirectory() as tmp:
        save_file(kept, f"{tmp}/model.safetensors")
        again = model_from_hf(case.converter, hf_config, load_file(f"{tmp}/model.safetensors"))
    for name, t in ours.state_dict().items():
        assert torch.equal(again.state_dict()[name], t), name


# every check, by the name a test id shows
CHECKS = {"logits": lambda case: check_logits(case, padded=False),
          "logits-padded": lambda case: check_logits(case, padded=True),
          "greedy": check_greedy, "round-trip": check_round_trip, "saveable": check_saveable,
          "leftovers": check_leftovers}


def parity_test(case: Callable[..., Case], variants: dict[str, dict]) -> Callable:
    """A test of every check on every variant (`case(**variants[name])`); assign it to a `test_` name."""

    @pytest.mark.parametrize("check", list(CHECKS))
    @pytest.mark.parametrize("variant", list(variants))
    def test(variant: str, check: str) -> None:
        CHECKS[check](case(**variants[variant]))

    test.__doc__ = "Logits (with and without source padding), greedy generation, round trip into a fresh HF model."
    return test
