"""Instruction tuning's pieces: packing whole conversations, labels on assistant tokens only, the resumable
pre-training-then-instructions stream, users' JSONL with one-line errors, chat-marker rows trained under LoRA."""

import json

import pytest
import torch

from transformers_zoo import DecoderOnly
from transformers_zoo.batching import IGNORE_INDEX, PhasedStream
from transformers_zoo.config import ModelConfig
from transformers_zoo.corpora import DataError
from transformers_zoo.corpora.instructions import read_conversations
from transformers_zoo.modules.lora import add_lora
from transformers_zoo.tasks.lm import train_stream
from transformers_zoo.tasks.sft import (
    PackedCollator,
    chat_rows,
    encode_all,
    pack,
    packed_stream,
    parses,
    train_rows_only,
)
from transformers_zoo.tokenizers import CharTokenizer
from transformers_zoo.tokenizers.chat import with_chat_tokens

TEXT = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,:?!\n"


def conversation(question: str, reply: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]


@pytest.fixture(scope="module")
def tok():
    return with_chat_tokens(CharTokenizer.train(TEXT))


def test_packing_keeps_conversations_whole_and_scores_only_replies(tok):
    convs = [conversation("q" * n, f"Reply {'z' * n}.") for n in range(1, 30)] + [conversation("x" * 200, "too long")]
    packed = pack(encode_all(tok, convs), block_size=96, seed=0)
    assert packed.dropped == 1 and packed.conversations == 29
    assert all(len(ids) <= 97 for ids, _ in packed.blocks) and len(packed.blocks) < 29
    start = tok.piece_ids["<|im_start|>"]
    assert sum(ids.count(start) for ids, _ in packed.blocks) == 2 * 29  # each conversation whole: 2 turns
    batch = PackedCollator(tok.pad_id)(packed.blocks)
    assert batch["input_ids"].shape == batch["labels"].shape and batch["input_ids"].shape[1] <= 96
    scored = [[t for t in row.tolist() if t != IGNORE_INDEX] for row in batch["labels"]]
    text = tok.decode([t for row in scored for t in row])
    replies = "".join(f"Reply {'z' * n}.\n" for n in range(1, 30))
    # the replies, each with the end of its turn (the marker, which is not text, and ChatML's newline after it)
    assert sorted(text) == sorted(replies)
    end = tok.piece_ids["<|im_end|>"]
    assert sum(row.count(end) for row in scored) == 29  # each reply's end of turn is trained
    assert pack(encode_all(tok, convs), 96, seed=0).blocks == packed.blocks  # seeded



def test_collated_padding_needs_no_mask_the_loss_is_that_of_the_masked_model(tok):
    convs = [conversation("q" * n, f"Reply {'z' * n}.") for n in range(1, 12)]
    batch = PackedCollator(tok.pad_id)(pack(encode_all(tok, convs), block_size=64, seed=0).blocks)
    ids, labels = batch["input_ids"], batch["labels"]
    assert not (ids == tok.pad_id).any() and (labels == IGNORE_INDEX).any()  # the model sees no padding
    real = torch.ones_like(ids, dtype=torch.bool)
    for row in range(len(ids)):  # the block's own length: its last trained or untrained target
        n = max(i for i in range(ids.shape[1]) if labels[row, i] != IGNORE_INDEX) + 1
        real[row, n:] = False
    torch.manual_seed(0)
    model = DecoderOnly(ModelConfig(vocab_size=tok.vocab_size, d_model=16, n_heads=2, n_layers=2, max_len=64,
                                    dropout=0.0, positional="rope", pad_id=tok.pad_id)).eval()
    scored = labels != IGNORE_INDEX
    masked = model(ids.masked_fill(~real, tok.pad_id), real)
    torch.testing.assert_close(model(ids)[scored], masked[scored], atol=1e-5, rtol=1e-5)

def test_phased_stream_resumes_where_it_stopped(tok):
    packed = pack(encode_all(tok, [conversation("q" * n, "yes") for n in range(1, 40)]), 64, seed=1)
    text = torch.tensor(tok.encode(TEXT * 20))

    def stream():
        return PhasedStream(train_stream(text, 64, 2, 0, tok.pad_id), packed_stream(packed, 3, 0, tok.pad_id), 4)

    a = stream()
    first = [next(a) for _ in range(5)]
    b = stream()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    rest = [next(b) for _ in range(7)]
    fresh = stream()
    expected = [next(fresh) for _ in range(12)]
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(first + rest, expected, strict=True))
    # 4 batches of running text (every token scored), then conversations (only replies scored)
    assert (expected[3]["labels"] != IGNORE_INDEX).all() and (expected[4]["labels"] == IGNORE_INDEX).any()


def test_user_jsonl_errors_name_file_and_line(tmp_path):
    good = json.dumps({"messages": conversation("hi", "hello")})
    cases = {"{not json": "not a JSON object", json.dumps({"text": "x"}): 'expected {"messages"',
             json.dumps({"messages": [{"role": "user", "content": "hi"}]}): "no assistant message",
             json.dumps({"messages": [{"role": "bot", "content": "hi"}]}): "role 'bot'"}
    for bad, message in cases.items():
        path = tmp_path / "chats.jsonl"
        path.write_text(f"{good}\n\n{bad}\n{good}\n")
        with pytest.raises(DataError) as err:
            read_conversations(path)
        assert str(err.value).startswith(f"{path}:3: ") and message in str(err.value)
        assert "\n" not in str(err.value)
    path.write_text(f"{good}\n{good}\n")
    assert read_conversations(path) == [conversation("hi", "hello")] * 2


def test_answers_parse_as_the_asked_format():
    assert parses("sentiment", " Positive") and not parses("sentiment", "positive!")
    assert parses("translate_en_de", "Ein Hund.") and not parses("translate_en_de", "") and \
        not parses("translate_en_de", "Ein\nHund")


def test_lora_trains_the_chat_marker_rows_and_nothing_else_of_the_embedding(tok):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tok.vocab_size, d_model=16, n_heads=2, n_layers=1, max_len=64, positional="rope",
                         norm="rmsnorm", ffn="swiglu", bias=False, tie_embeddings=True, dropout=0.0,
                         pad_id=tok.pad_id)
    model = DecoderOnly(config)
    add_lora(model, ("qkv", "out"), rank=2, alpha=4)
    rows = chat_rows(tok)
    assert rows == [tok.base.vocab_size, tok.base.vocab_size + 1]
    assert train_rows_only(model, rows) == 2 * 16
    before = model.embed.weight.detach().clone()
    from transformers_zoo.training.optim import build_optimizer

    opt = build_optimizer(model, lr=0.1, weight_decay=0.1)
    batch = PackedCollator(tok.pad_id)(pack(encode_all(tok, [conversation("q", "yes")] * 3), 63, 0).blocks)
    for _ in range(2):
        logits = model(batch["input_ids"])
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten()).backward()
        opt.step()
        opt.zero_grad()
    after = model.embed.weight.detach()
    assert torch.equal(after[: rows[0]], before[: rows[0]]) and not torch.equal(after[rows], before[rows])


def test_instruction_set_is_seeded_cached_and_keeps_tests_out(shared_data_dir, tmp_path):
    from transformers_zoo.corpora.instructions import TASKS, load_instructions

    sizes = dict(per_task=300, val_per_task=20, test_size=None)
    sets = load_instructions(shared_data_dir, tmp_path, sst2_val=0, imdb_reviews=0, seed=3, **sizes)
    assert len(list((tmp_path / "instructions").glob("*.json"))) == 1
    assert load_instructions(shared_data_dir, tmp_path, sst2_val=0, imdb_reviews=0, seed=3, **sizes) == sets
    assert {i.task for i in sets["train"]} == set(TASKS)
    tests = {i.task: i for i in sets["test"]}
    assert len(sets["test"]) == 1000 + 872 and set(tests) == {"translate_en_de", "sentiment"}
    asked = {m["content"] for i in sets["train"] for m in i.messages}
    for inst in sets["test"]:  # no test sentence is asked or answered in training, in any phrasing
        text = inst.prompt[-1]["content"]
        assert inst.reference not in asked or inst.task == "sentiment"
        assert not any(text in a for a in asked if len(text) > 40)
    assert all(m["role"] in ("user", "assistant") for i in sets["train"][:50] for m in i.messages)
