"""GPT-2's byte-level BPE tokenizer (tiktoken) from the shared rank file, saved and loaded, and downloaded."""

import pytest
from test_corpora import _serve_copy

from transformers_zoo import corpora
from transformers_zoo.tokenizers import GPT2Tokenizer, load_tokenizer

pytest.importorskip("tiktoken")
pytestmark = pytest.mark.usefixtures("no_internet")


@pytest.fixture(scope="module")
def gpt2_tokenizer(shared_data_dir):
    if not (shared_data_dir / "gpt2" / "gpt2.tiktoken").is_file():
        pytest.skip(f"{shared_data_dir}/gpt2/gpt2.tiktoken not found (the shared data lacks GPT-2's ranks)")
    return GPT2Tokenizer.fetch(shared_data_dir)


def test_hello_world_encodes_to_gpt2_ids_and_decodes_back(gpt2_tokenizer):
    """The example everyone checks: "Hello, world!" -> [15496, 11, 995, 0] ("!" is id 0)."""
    assert gpt2_tokenizer.encode("Hello, world!") == [15496, 11, 995, 0]
    assert gpt2_tokenizer.decode([15496, 11, 995, 0]) == "Hello, world!"


def test_specials_round_trip_and_save_load(gpt2_tokenizer, tmp_path):
    tok = gpt2_tokenizer
    assert (tok.vocab_size, tok.eos_id, tok.bos_id, tok.pad_id) == (50257, 50256, 50256, 50256)
    assert tok.id_to_piece(50256) == "<|endoftext|>"
    text = "ROMEO:\n  What, ho! <|endoftext|> naïve \u2603\n\n"
    ids = tok.encode(text)
    assert 50256 not in ids and tok.decode(ids) == text  # lossless; the special is spelled out in text
    assert tok.decode(ids + [50256]) == text
    again = load_tokenizer(tok.save(tmp_path / "tok"))
    assert isinstance(again, GPT2Tokenizer) and again.fingerprint == tok.fingerprint
    assert again.encode(text) == ids


def test_rank_file_downloads_checksummed(server, shared_data_dir, tmp_path):
    if not (shared_data_dir / "gpt2" / "gpt2.tiktoken").is_file():
        pytest.skip(f"{shared_data_dir}/gpt2/gpt2.tiktoken not found (the shared data lacks GPT-2's ranks)")
    _serve_copy(server, shared_data_dir, "gpt2", ["gpt2.tiktoken"])
    tok = GPT2Tokenizer.fetch(tmp_path)
    assert (tmp_path / "gpt2" / "gpt2.tiktoken").is_file() and tok.encode("Hello, world!") == [15496, 11, 995, 0]
    (server.root / "gpt2" / "gpt2.tiktoken").write_bytes(b"SGVsbG8= 0\n")
    with pytest.raises(corpora.DataError, match="gpt2.tiktoken"):
        GPT2Tokenizer.fetch(tmp_path / "other")
