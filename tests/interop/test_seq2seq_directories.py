"""BART, Marian and T5 through the shared registry: a `save_pretrained` directory loads with `load_hf_model`
to the same logits, and `export_hf` writes a directory `from_pretrained` loads back to the same logits."""

import pytest
import test_bart
import test_marian
import test_t5
import torch
from seq2seq_parity import ATOL, hf_logits, source, target

from transformers_zoo.interop import ConversionError, export_hf, load_hf_model

transformers = pytest.importorskip("transformers")

CASES = {"bart": (test_bart.case, transformers.BartForConditionalGeneration),
         "marian": (test_marian.case, transformers.MarianMTModel),
         "t5": (test_t5.case, transformers.T5ForConditionalGeneration)}


def ours(model, src, mask, tgt):
    with torch.no_grad():
        return model(src, tgt, src_mask=mask.bool())


@pytest.mark.parametrize("name", sorted(CASES))
def test_directory_in_and_out(name, tmp_path):
    make, hf_class = CASES[name]
    case = make()
    case.hf_model.eval().save_pretrained(tmp_path / "hf")
    model = load_hf_model(tmp_path / "hf")
    src, mask = source(case, padded=True)
    tgt = target(case)
    expected = hf_logits(case.hf_model, src, mask, tgt)
    got = ours(model, src, mask, tgt)
    assert torch.allclose(got, expected, atol=ATOL)
    export_hf(model, tmp_path / "out", model_type=name)
    back = hf_class.from_pretrained(tmp_path / "out").eval()
    assert torch.allclose(hf_logits(back, src, mask, tgt), expected, atol=ATOL)


def test_unsupported_architecture_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "whisper"}')
    with pytest.raises(ConversionError, match=r"config\.json: unsupported architecture model_type='whisper'; "
                                              r"supported: .*bart.*marian.*t5"):
        load_hf_model(tmp_path)
