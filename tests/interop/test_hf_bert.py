"""BERT: BertForMaskedLM and BertForSequenceClassification against their conversions (with padding) and back."""

import torch
from hf_parity import close, convert, padding_masks, random_ids, transformers

from transformers_zoo.interop import export_hf


def small_bert(cls, **changes):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=32, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0, initializer_range=0.1, pad_token_id=0,
                                     **changes)
    return cls(config)


@torch.no_grad()
def test_bert_mlm_logits_with_and_without_padding_and_export(tmp_path):
    hf = small_bert(transformers.BertForMaskedLM)
    ours = convert(hf, tmp_path)
    ids = random_ids(99, 0, (2, 11))
    close(ours(ids), hf(ids).logits)
    mask = padding_masks(*ids.shape)["right"]  # BERT counts positions from the first token: pad on the right
    close(ours(ids, mask)[mask], hf(ids, attention_mask=mask.long()).logits[mask])
    export_hf(ours, tmp_path / "ours")
    again = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    close(again(ids, attention_mask=mask.long()).logits[mask], ours(ids, mask)[mask])


@torch.no_grad()
def test_bert_sequence_classification_converts_whole_with_its_pooler(tmp_path):
    hf = small_bert(transformers.BertForSequenceClassification, num_labels=3)
    ours = convert(hf, tmp_path)
    assert (ours.config.n_classes, ours.config.pooling) == (3, "cls_tanh")
    ids = random_ids(99, 0, (2, 11))
    mask = padding_masks(*ids.shape)["right"]
    close(ours.classify(ids, mask), hf(ids, attention_mask=mask.long()).logits)
    export_hf(ours, tmp_path / "ours")
    again = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ours").eval()
    close(again(ids, attention_mask=mask.long()).logits, ours.classify(ids, mask))
