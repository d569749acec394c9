"""Checkpoint files: the weight formats read, and one-line errors that name the file and the tensor."""

import json

import pytest
import torch
from hf_parity import bert_vocab, close, random_ids, write_tiny_bert, write_tiny_llama
from safetensors.torch import load_file, save_file
from test_hf_gpt2 import small_gpt2

from transformers_zoo.interop import CONVERTERS, ConversionError, load_hf, load_hf_model


@pytest.fixture
def gpt2_dir(tmp_path):
    small_gpt2().save_pretrained(tmp_path / "gpt2")
    return tmp_path / "gpt2"


def edit_weights(directory, edit):
    path = directory / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)
    return path


def one_line_error(directory, *words):
    with pytest.raises(ConversionError) as err:
        load_hf(directory)
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_unsupported_architecture_names_model_type_and_lists_supported(gpt2_dir):
    config = json.loads((gpt2_dir / "config.json").read_text())
    (gpt2_dir / "config.json").write_text(json.dumps(dict(config, model_type="gptj")))
    one_line_error(gpt2_dir, str(gpt2_dir / "config.json"), "'gptj'", *CONVERTERS)


def test_missing_tensor_names_file_and_tensor(gpt2_dir):
    path = edit_weights(gpt2_dir, lambda t: t.pop("transformer.h.1.mlp.c_fc.weight"))
    one_line_error(gpt2_dir, str(path), "missing tensor", "h.1.mlp.c_fc.weight")


def test_shape_mismatch_names_file_tensor_and_shapes(gpt2_dir):
    def shrink(t):
        t["transformer.h.0.attn.c_attn.bias"] = t["transformer.h.0.attn.c_attn.bias"][:100]

    path = edit_weights(gpt2_dir, shrink)
    one_line_error(gpt2_dir, str(path), "h.0.attn.c_attn.bias", "(100,)", "(192,)")


def test_unexpected_tensor_names_file_and_tensor(gpt2_dir):
    path = edit_weights(gpt2_dir, lambda t: t.update({"transformer.h.2.ln_1.weight": torch.ones(64)}))
    one_line_error(gpt2_dir, str(path), "unexpected tensor", "h.2.ln_1.weight")


def test_pytorch_bin_and_sharded_safetensors_load_the_same_weights(gpt2_dir, tmp_path):
    ids = random_ids(97, 96, (1, 7))
    reference = load_hf_model(gpt2_dir)(ids)
    tensors = load_file(gpt2_dir / "model.safetensors")
    bin_dir, sharded = tmp_path / "bin", tmp_path / "sharded"
    for d in (bin_dir, sharded):
        d.mkdir()
        (d / "config.json").write_text((gpt2_dir / "config.json").read_text())
    torch.save(tensors, bin_dir / "pytorch_model.bin")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, sharded / shard)
    index = {"metadata": {}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    for d in (bin_dir, sharded):
        with torch.no_grad():
            close(load_hf_model(d)(ids), reference)


def test_missing_directory_weights_or_config_field_is_one_line(gpt2_dir, tmp_path):
    one_line_error(tmp_path / "nowhere", "nowhere")
    (gpt2_dir / "model.safetensors").unlink()
    one_line_error(gpt2_dir, str(gpt2_dir), "no weights found")
    (gpt2_dir / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    one_line_error(gpt2_dir, str(gpt2_dir / "config.json"), "missing field 'n_embd'")


@pytest.mark.parametrize("family,name", [("bert", "bert.encoder.layer.1.output.dense.weight"),
                                         ("llama", "model.layers.0.mlp.down_proj.weight")])
def test_bert_and_llama_errors_name_file_and_tensor(tmp_path, family, name):
    """Missing, misshapen and leftover tensors of the other decoder/encoder families: one line each, with the
    file and the tensor (T5, BART and Marian: `seq2seq_parity.check_bad_tensor` and `check_leftovers`)."""
    directory = write_tiny_bert(tmp_path, bert_vocab(["hello"])) if family == "bert" else write_tiny_llama(tmp_path)
    load_hf(directory)  # as saved
    original = load_file(directory / "model.safetensors")
    extra = name.replace("weight", "extra")
    edits = {"missing tensor": (name, lambda t: t.pop(name)),
             "(3, 1)": (name, lambda t: t.update({name: torch.zeros(3, 1)})),
             "unexpected tensor": (extra, lambda t: t.update({extra: torch.zeros(2)}))}
    for what, (tensor, edit) in edits.items():
        save_file(original, directory / "model.safetensors")
        path = edit_weights(directory, edit)
        one_line_error(directory, f"{path}: ", what, tensor.removeprefix("bert."))
