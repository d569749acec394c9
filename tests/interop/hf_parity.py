"""Checks the interop tests share: a random `transformers` model, saved, converted, must give our model's
logits (with and without padding) and greedy tokens; exported back, `from_pretrained` must agree too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from transformers_zoo.generation import greedy
from transformers_zoo.interop import export_hf, load_hf_model

transformers = pytest.importorskip("transformers", reason="the interop parity tests compare against transformers")

ATOL = 1e-5


def random_ids(vocab: int, pad_id: int, shape: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Token ids that are never `pad_id` (our models read it as padding when no mask is given)."""
    ids = torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))
    return ids.masked_fill(ids == pad_id, (pad_id + 1) % vocab)


def close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=ATOL)


def convert(hf_model, tmp_path: Path):
    """Save the HF model as a checkpoint directory and convert it; returns our model (eval mode).

    Every parameter is perturbed first, so that norm weights (ones) and biases (zeros) count too."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in hf_model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    hf_model.eval().save_pretrained(tmp_path / "hf")
    return load_hf_model(tmp_path / "hf")


def padding_masks(batch: int, length: int) -> dict[str, torch.Tensor]:
    """Row 1 padded on the right, and on the left, by 3 positions."""
    right = torch.ones(batch, length, dtype=torch.bool)
    right[1, -3:] = False
    return {"right": right, "left": right.flip(-1)}


@torch.no_grad()
def check_decoder(hf_model, tmp_path: Path, auto_class) -> None:
    ours = convert(hf_model, tmp_path)
    cfg = ours.config
    ids = random_ids(cfg.vocab_size, cfg.pad_id, (2, 9))
    close(ours(ids), hf_model(ids).logits)
    for mask in padding_masks(*ids.shape).values():
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # HF counts positions from 0 only if told
        theirs = hf_model(ids, attention_mask=mask.long(), position_ids=positions).logits
        close(ours(ids, mask)[mask], theirs[mask])
    for mask in (None, padding_masks(*ids.shape)["left"]):  # prompts are padded on the left to generate
        # greedy: our cached decoding against HF generate; neither may emit pad_id (ours never does)
        tokens = greedy(ours, ours.init_cache(2), ids, 20, eos_id=None, prompt_mask=mask)
        hf_mask = torch.ones_like(ids) if mask is None else mask.long()
        generated = hf_model.generate(ids, attention_mask=hf_mask, max_new_tokens=20, min_new_tokens=20,
                                      do_sample=False, pad_token_id=cfg.pad_id, suppress_tokens=[cfg.pad_id])
        assert tokens.tolist() == generated[:, ids.shape[1]:].tolist()
    export_hf(ours, tmp_path / "ours")
    again = auto_class.from_pretrained(tmp_path / "ours").eval()
    close(again(ids).logits, ours(ids))


def bert_vocab(words) -> list[str]:
    """A WordPiece vocabulary laid out like bert-base-uncased's: [PAD] 0, [unused*], [UNK] 100, [CLS] 101,
    [SEP] 102, [MASK] 103, then single characters (as words and as ## continuations) and `words`."""
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    pieces = ["[PAD]", *[f"[unused{i}]" for i in range(99)], "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces += chars + [f"##{c}" for c in chars if c.isalnum()]
    return pieces + sorted(set(words) - set(pieces))


def perturb(model, scale: float = 0.05, skip: str | None = None):
    """Add noise to every parameter (but those named with `skip`), so that norm gains (ones) and biases
    (zeros) count too; returns the model in eval mode."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if skip is None or skip not in name:
                p.add_(torch.randn_like(p) * scale)
    return model.eval()


def write_tiny_bert(directory: Path, vocab: list[str], cls=None, seed: int = 0, **changes) -> Path:
    """A random `BertForPreTraining` (encoder, MLM head, NSP-trained pooler) with `vocab.txt` and an
    uncased `tokenizer_config.json`, saved as a Hugging Face checkpoint directory."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64, pad_token_id=0, **changes)
    model = (cls or transformers.BertForPreTraining)(config)
    perturb(model).save_pretrained(directory)  # norms and biases too, so that a weight left out shows
    (directory / "vocab.txt").write_text("".join(f"{piece}\n" for piece in vocab), encoding="utf-8")
    (directory / "tokenizer_config.json").write_text('{"do_lower_case": true, "tokenizer_class": "BertTokenizer"}\n')
    return directory


def write_tiny_gpt2(directory: Path, data_dir: Path, n_positions: int = 32) -> Path:
    """A random one-layer GPT-2 checkpoint directory (GPT-2's full vocabulary); skips the test when the
    shared data lacks the gpt2 rank file its tokenizer needs."""
    if not (data_dir / "gpt2" / "gpt2.tiktoken").is_file():
        pytest.skip(f"{data_dir}/gpt2/gpt2.tiktoken not found (the shared data lacks GPT-2's ranks)")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=n_positions)
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


# Source and target texts of the tiny Marian checkpoints: the two sentencepiece models see different
# languages, so some target pieces are missing from the source model (and the reverse).
MARIAN_SRC = ["A man rides a bike down the street.", "Two dogs play in the snow.", "A woman is reading a book.",
              "Children are playing football in a park.", "The cat sleeps on a red sofa."] * 4
MARIAN_TGT = ["Ein Mann fährt mit dem Fahrrad die Straße hinunter.", "Zwei Hunde spielen im Schnee.",
              "Eine Frau liest ein Buch.", "Kinder spielen Fußball in einem Park.",
              "Die Katze schläft auf einem roten Sofa."] * 4


def _spm_model(texts: list[str], vocab_size: int) -> bytes:
    """A sentencepiece model with opus-mt's specials (<unk> 0, <s> 1, </s> 2)."""
    import io

    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=out, vocab_size=vocab_size,
                                   model_type="unigram", character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2,
                                   pad_id=-1, minloglevel=2, num_threads=1, hard_vocab_limit=False)
    return out.getvalue()


def write_tiny_marian(directory: Path, seed: int = 0, d_model: int = 32, layers: int = 1) -> Path:
    """A random `MarianMTModel` with its tokenizer (source.spm, target.spm, one vocab.json laid out as
    opus-mt's: </s> 0, <unk> 1, the pieces of both models, <pad> last = decoder start), saved by transformers."""
    import sentencepiece as spm

    directory.mkdir(parents=True, exist_ok=True)
    models = {"source.spm": _spm_model(MARIAN_SRC, 60), "target.spm": _spm_model(MARIAN_TGT, 60)}
    vocab = {"</s>": 0, "<unk>": 1}
    for name, proto in models.items():
        (directory / name).write_bytes(proto)
        sp = spm.SentencePieceProcessor(model_proto=proto)
        for i in range(sp.get_piece_size()):
            if not sp.is_control(i) and not sp.is_unknown(i):
                vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tok = transformers.MarianTokenizer(*(str(directory / n) for n in ("source.spm", "target.spm", "vocab.json")))
    tok.save_pretrained(directory)
    torch.manual_seed(seed)
    pad = vocab["<pad>"]
    config = transformers.MarianConfig(
        vocab_size=len(vocab), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model, max_position_embeddings=64, pad_token_id=pad, decoder_start_token_id=pad,
        eos_token_id=0, forced_eos_token_id=0, activation_function="swish", scale_embedding=True)
    model = transformers.MarianMTModel(config)
    perturb(model, skip="embed_positions").save_pretrained(directory)
    return directory


def write_tiny_llama(directory: Path, seed: int = 0) -> Path:
    """A random one-layer `LlamaForCausalLM` (GQA: 2 heads, 1 key/value head) with a byte-level BPE
    `tokenizer.json` trained here by `tokenizers`, whose post-processor puts `<s>` first as Llama's does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    directory.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(MARIAN_SRC + MARIAN_TGT, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "tokenizer_class": "PreTrainedTokenizerFast"}))
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                      max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    model = transformers.LlamaForCausalLM(config)
    perturb(model).save_pretrained(directory)
    return directory


def write_tiny_t5(directory: Path, seed: int = 0) -> Path:
    """A random one-layer `T5ForConditionalGeneration` (v1.0: relu, tied) with a `tokenizer.json` laid out as
    T5's (<pad> 0 = decoder start, </s> 1, <unk> 2; sentencepiece-style metaspace pieces; `</s>` appended)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    directory.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"], show_progress=False)
    tok.train_from_iterator(MARIAN_SRC + MARIAN_TGT, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.save(str(directory / "tokenizer.json"))
    specials = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    config = {**specials, "tokenizer_class": "PreTrainedTokenizerFast"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    torch.manual_seed(seed)
    config = transformers.T5Config(vocab_size=tok.get_vocab_size(), d_model=32, d_kv=16, d_ff=64, num_layers=1,
                                   num_heads=2, feed_forward_proj="relu", decoder_start_token_id=0, pad_token_id=0,
                                   eos_token_id=1, dropout_rate=0.0)
    model = transformers.T5ForConditionalGeneration(config)
    perturb(model).save_pretrained(directory)
    return directory
