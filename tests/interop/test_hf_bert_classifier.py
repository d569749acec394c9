"""A BERT checkpoint under a classification head for fine-tuning: the inputs our classification batches build
and the logits of our model equal Hugging Face's BertTokenizer + BertForSequenceClassification."""

import pytest
import torch
from hf_parity import bert_vocab, close, transformers, write_tiny_bert

from transformers_zoo.interop import ConversionError, load_hf_classifier
from transformers_zoo.tasks.classification import collator_for, encode_examples
from transformers_zoo.tokenizers import WordPieceTokenizer

TEXTS = ["A gorgeous, witty film!", "it 's not that bad", "Naïve and dull.", "unwatchable ... 1/10", "ok"]


@torch.no_grad()
def test_classifier_inputs_and_logits_equal_bert_for_sequence_classification(tmp_path):
    vocab = bert_vocab("a gorgeous witty film it s not that bad naive and dull un ##watch ##able ok".split())
    directory = write_tiny_bert(tmp_path / "bert", vocab)
    ours, notes = load_hf_classifier(directory, n_classes=3)
    assert notes == ["classifier freshly initialised (not in " + str(directory) + ")"]  # the pooler is the file's
    ours.eval()
    hf = transformers.BertForSequenceClassification.from_pretrained(directory, num_labels=3).eval()
    hf.classifier.load_state_dict(ours.classifier.state_dict())  # both heads are new: give them the same one
    close(ours.pooler.weight, hf.bert.pooler.dense.weight)

    tok = WordPieceTokenizer.from_hf(directory)
    encoded, _ = encode_examples(tok, [(t, 0) for t in TEXTS], ours.config.max_len - 2)
    batch = collator_for(tok)(encoded)
    theirs = transformers.AutoTokenizer.from_pretrained(directory)(TEXTS, padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == theirs["input_ids"].tolist()  # [CLS] x [SEP], padded with [PAD]
    assert not theirs["token_type_ids"].any()  # one segment: what our position table has folded in
    assert (batch["input_ids"] == tok.pad_id).any()  # the batch is padded, so the mask matters
    close(ours.classify(batch["input_ids"]), hf(**theirs).logits)


def test_classifier_checkpoint_keeps_its_head_and_other_models_are_refused(tmp_path):
    vocab = bert_vocab(["film"])
    directory = write_tiny_bert(tmp_path / "cls", vocab, cls=transformers.BertForSequenceClassification, num_labels=2)
    ours, notes = load_hf_classifier(directory, n_classes=2)
    assert notes == [] and ours.config.pooling == "cls_tanh"
    hf = transformers.BertForSequenceClassification.from_pretrained(directory).eval()
    ids = torch.tensor([[101, 150, 160, 102, 0]])
    with torch.no_grad():
        close(ours.eval().classify(ids), hf(ids, attention_mask=(ids != 0).long()).logits)
    _, notes = load_hf_classifier(directory, n_classes=5)
    assert notes == [f"classifier freshly initialised (not in {directory})"]
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=8)
                                 ).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ConversionError, match=r"gpt2/config.json: model_type='gpt2' is not a BERT checkpoint"):
        load_hf_classifier(tmp_path / "gpt2", 2)
