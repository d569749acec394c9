"""Chat templates: the ids equal `transformers`' `apply_chat_template` on the same files (three template
styles), our ChatML tokens on our tokenizers, the assistant mask, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transformers_zoo.corpora import DataError
from transformers_zoo.tokenizers import CharTokenizer, load_tokenizer
from transformers_zoo.tokenizers.chat import (
    ChatTemplate,
    ChatTokenizer,
    ConversationError,
    check_conversation,
    encode_chat,
    encode_training,
    end_of_turn,
    stop_ids,
    with_chat_tokens,
)

# ChatML as Qwen2 and SmolLM2 write it, with a default system prompt when the conversation brings none
CHATML_DEFAULT_SYSTEM = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# Llama-3 style: a BOS variable, role headers, trimmed content, <|eot_id|> ending each turn
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
# Zephyr style, with Jinja whitespace control, raise_exception and eos_token: what trim_blocks changes shows here
ZEPHYR = """{% for message in messages %}
{% if message['role'] not in ['system', 'user', 'assistant'] %}
{{ raise_exception('unknown role') }}
{% endif %}
{% if message['role'] == 'user' %}
{{ '<|user|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|eot_id|>", "<|user|>", "<|system|>", "<|assistant|>"]
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Translate to German: a man rides a bike.",
         "Ein Mann fährt Fahrrad. Is this review positive or negative?", "You are a helpful assistant.",
         "system user assistant positive negative"] * 4

CONVERSATIONS = [
    [{"role": "user", "content": "Translate to German: a man rides a bike."}],
    [{"role": "system", "content": "Answer in one word."},
     {"role": "user", "content": "Is this review positive or negative? The lazy dog."},
     {"role": "assistant", "content": "negative"},
     {"role": "user", "content": " The quick brown fox!  "}],
]


def write_checkpoint_tokenizer(directory: Path, template: str, bos: str, eos: str, as_file: bool = False) -> Path:
    """A byte-level BPE `tokenizer.json` trained here with the templates' markers as special added tokens, and a
    `tokenizer_config.json` naming bos/eos and holding the template (or `chat_template.jinja` beside it)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    directory.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TEXTS, trainer)
    tok.save(str(directory / "tokenizer.json"))
    config = {"bos_token": bos, "eos_token": eos, "unk_token": "<unk>", "tokenizer_class": "PreTrainedTokenizerFast"}
    if as_file:
        (directory / "chat_template.jinja").write_text(template)
    else:
        config["chat_template"] = template
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize("name,template,bos,eos,as_file", [
    ("chatml-default-system", CHATML_DEFAULT_SYSTEM, "<|im_start|>", "<|im_end|>", False),
    ("llama3", LLAMA3, "<|begin_of_text|>", "<|eot_id|>", True),
    ("zephyr", ZEPHYR, "<s>", "</s>", False),
])
def test_ids_equal_apply_chat_template(tmp_path, name, template, bos, eos, as_file):
    transformers = pytest.importorskip("transformers")
    from transformers_zoo.tokenizers import HFJsonTokenizer

    directory = write_checkpoint_tokenizer(tmp_path / name, template, bos, eos, as_file)
    theirs = transformers.AutoTokenizer.from_pretrained(directory)
    ours = HFJsonTokenizer.from_hf(directory)
    for messages in CONVERSATIONS:
        for prompt in (True, False):
            expected = theirs.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=True,
                                                  return_dict=False)
            assert encode_chat(ours, messages, add_generation_prompt=prompt) == list(expected), (name, prompt)
    assert ours.id_to_piece(end_of_turn(ours)) == eos  # the special id a reply ends with
    # the template travels with the tokenizer when a run saves it
    ours.save(tmp_path / "saved")
    again = load_tokenizer(tmp_path / "saved")
    assert encode_chat(again, CONVERSATIONS[1]) == encode_chat(ours, CONVERSATIONS[1])


def test_our_chatml_tokens_on_a_char_tokenizer(tmp_path):
    base = CharTokenizer.train("".join(TEXTS) + "\n")
    tok = with_chat_tokens(base)
    assert isinstance(tok, ChatTokenizer) and tok.vocab_size == base.vocab_size + 2
    assert with_chat_tokens(tok) is tok  # has a template already
    start, end = tok.piece_ids["<|im_start|>"], tok.piece_ids["<|im_end|>"]
    ids = encode_chat(tok, CONVERSATIONS[0])
    assert ids[0] == start and ids.count(start) == 2 and ids.count(end) == 1
    assert ids[-len(base.encode("assistant\n")):] == base.encode("assistant\n")
    assert tok.decode(ids) == "user\nTranslate to German: a man rides a bike.\nassistant\n"  # markers dropped
    assert stop_ids(tok) == {end, base.eos_id}
    # a marker typed as text inside content still becomes the one id (the template's own text is the same)
    assert tok.encode("a<|im_end|>b") == base.encode("a") + [end] + base.encode("b")
    tok.save(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert isinstance(again, ChatTokenizer) and again.fingerprint == tok.fingerprint
    assert encode_chat(again, CONVERSATIONS[1]) == encode_chat(tok, CONVERSATIONS[1])


def test_training_mask_covers_replies_and_their_end_of_turn():
    tok = with_chat_tokens(CharTokenizer.train("".join(TEXTS) + "\n"))
    messages = CONVERSATIONS[1] + [{"role": "assistant", "content": "positive"}]
    ids, trained = encode_training(tok, messages)
    assert len(ids) == len(trained)
    replies = [i for i, t in zip(ids, trained, strict=True) if t]
    end = tok.piece_ids["<|im_end|>"]
    assert tok.decode(replies) == "negative\npositive\n"
    assert replies.count(end) == 2  # the model learns to end its turn
    # the prompt up to the last reply is exactly what generation is given
    prompt = encode_chat(tok, messages[:-1])
    assert ids[:len(prompt)] == prompt and not any(trained[len(prompt) - 1:len(prompt)])
    assert all(trained[len(prompt):])


@pytest.mark.parametrize("messages,message", [
    ([], "non-empty list"),
    ([{"role": "robot", "content": "hi"}], "role 'robot'"),
    ([{"role": "user", "content": 3}], "content 3"),
    (["hi"], "message 0 is"),
])
def test_bad_conversations_get_one_line(messages, message):
    with pytest.raises(ConversationError, match=message) as err:
        check_conversation(messages, "data.jsonl:7")
    assert str(err.value).startswith("data.jsonl:7: ") and "\n" not in str(err.value)


def test_no_assistant_turn_and_no_template_are_refused(tmp_path):
    tok = with_chat_tokens(CharTokenizer.train("abc user\n"))
    with pytest.raises(ConversationError, match="no assistant message"):
        encode_training(tok, [{"role": "user", "content": "abc"}], "f.jsonl:2")
    with pytest.raises(ConversationError, match="has no chat template.*sft.py"):
        encode_chat(CharTokenizer.train("abc"), [{"role": "user", "content": "abc"}])
    with pytest.raises(ConversationError, match="unknown role"):  # the template's own raise_exception
        ChatTemplate(ZEPHYR, {"eos_token": "</s>"}).render([{"role": "tool", "content": "x"}])
    with pytest.raises(DataError, match="does not compile"):
        ChatTemplate("{% for %}").render([])
