"""RAG: long documents as token windows, the grounded prompt (numbered sources, best first; citations), the context
budget (lowest-ranked passages dropped, said; a question too long: one line), and `rag.py ask` end to end on a
tiny BERT encoder's index and a tiny chat Llama, refusing another encoder's index and an empty one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from transformers_zoo.retrieval.index import Hit, IndexFolderError, VectorIndex
from transformers_zoo.retrieval.passages import split_passages, windows
from transformers_zoo.retrieval.rag import citations, format_sources, grounded_prompt
from transformers_zoo.tokenizers import CharTokenizer
from transformers_zoo.tokenizers.chat import ChatTemplate, ConversationError, encode_chat, with_chat_tokens

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "interop"))
sys.path.insert(0, str(TESTS.parent / "recipes"))

HITS = [Hit("doc#2", "The Eiffel tower is in Paris.", 0.9), Hit("doc#1", "Paris is the capital of France.", 0.8),
        Hit("b", "Berlin is the capital of Germany.", 0.5), Hit("c", "A dog runs in the park.", 0.1)]


def chat_tokenizer():
    return with_chat_tokens(CharTokenizer.train("".join(h.text for h in HITS) + "Where? [](): \n0123456789"))


def test_windows_and_passages_keep_the_documents_text():
    assert windows([1] * 10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert windows([2, 9, 1, 1], 4, 0) == [(0, 1), (1, 2), (2, 4)]  # a word longer than a passage: alone
    with pytest.raises(ValueError, match="overlap"):
        windows([1], 4, 4)
    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ,.")
    long = "the quick brown fox,  jumps over the lazy dog. and again the quick brown fox"
    ids, texts = split_passages(["short", "long"], ["a b", long], tok, size=20, overlap=6)
    assert ids[0] == "short" and texts[0] == "a b"  # fits: kept as it is
    assert ids[1:] == [f"long#{n}" for n in range(1, len(ids))] and len(ids) > 3
    for text in texts[1:]:
        assert text in long and sum(len(w) for w in text.split()) <= 20  # a char tokenizer: a token a char
    for before, after in zip(texts[1:], texts[2:], strict=False):
        assert before.split()[-1] == after.split()[0] or set(before.split()) & set(after.split())  # overlap
    assert texts[1].startswith("the quick") and texts[-1].endswith("brown fox")


def test_prompt_numbers_the_sources_best_first_and_reads_citations():
    tok = chat_tokenizer()
    prompt = grounded_prompt(tok, "Where is Paris?", HITS, context=4000, reply_room=50)
    assert prompt.dropped == 0 and prompt.notice is None and prompt.sources == HITS
    assert prompt.user == "Where is Paris?" and "cite" in prompt.system.lower()
    positions = [prompt.system.index(f"[{n}] {h.text}") for n, h in enumerate(HITS, start=1)]
    assert positions == sorted(positions)
    assert encode_chat(tok, prompt.messages)  # renders with the template
    assert citations("Paris [2], the tower [1][2]; not [9] or [0].", len(HITS)) == [2, 1]
    printed = format_sources(prompt.sources, cited=[2, 1]).splitlines()
    assert printed[0] == "Sources:" and printed[1].startswith("[1]* doc#2 (score 0.900): The Eiffel")
    assert printed[3].startswith("[3] b (score 0.500)")
    # a template without a system role gets the sources in the user message
    no_system = ChatTemplate("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
                             "{% endif %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}")
    tok.chat_template = no_system
    prompt = grounded_prompt(tok, "Where is Paris?", HITS, context=4000, reply_room=50)
    assert prompt.system is None and prompt.user.endswith("Question: Where is Paris?") and "[4] A dog" in prompt.user


def test_context_budget_drops_the_lowest_ranked_passages():
    tok = chat_tokenizer()
    two = grounded_prompt(tok, "Where is Paris?", HITS[:2], context=4000, reply_room=0)
    context = len(encode_chat(tok, two.messages)) + 30  # room for two sources and a 30-token reply
    prompt = grounded_prompt(tok, "Where is Paris?", HITS, context=context, reply_room=30)
    assert prompt.sources == HITS[:2] and prompt.dropped == 2
    assert prompt.notice == "dropped the 2 lowest-ranked of 4 passages to fit the context (kept 2)"
    with pytest.raises(ConversationError, match="the question is .* tokens .* context holds 60") as err:
        grounded_prompt(tok, "Where is Paris? " * 5, HITS, context=60, reply_room=30)
    assert "\n" not in str(err.value)
    with pytest.raises(ConversationError, match="best passage does not fit"):
        grounded_prompt(tok, "Where?", HITS, context=70, reply_room=30)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    pytest.importorskip("transformers")
    from chat_checkpoint import write_tiny_chat_llama
    from hf_parity import write_tiny_bert

    from transformers_zoo.interop.sentence_transformers import load_sentence_encoder
    from transformers_zoo.retrieval.search import index_corpus

    root = tmp_path_factory.mktemp("rag")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz.,?", "the", "is", "paris"]
    for seed in (0, 1):
        write_tiny_bert(root / f"bert{seed}", vocab, seed=seed)
    docs = ["Paris is the capital of France. " * 6, "Berlin is the capital of Germany.", "A dog runs in the park."]
    encoder = load_sentence_encoder(f"hf:{root / 'bert0'}")
    index_corpus(encoder, ["fr", "de", "dog"], docs, root / "index", source=f"hf:{root / 'bert0'}",
                 passages=(40, 8))
    write_tiny_chat_llama(root / "chat", max_positions=512)
    return root


def test_rag_ask_streams_an_answer_and_numbers_its_sources(checkpoints, capsys):
    import rag

    index = VectorIndex.load(checkpoints / "index")
    assert len(index) > 3 and "fr#1" in index.ids  # the long document is passages
    assert rag.ask_main(["--index", str(checkpoints / "index"), "--model", f"hf:{checkpoints / 'chat'}", "-k", "3",
                         "--max-new-tokens", "8", "What is the capital of France?"]) == 0
    out = capsys.readouterr()
    sources = out.out.split("\n\nSources:\n")[1].splitlines()
    assert [line[:4] for line in sources] == ["[1] ", "[2] ", "[3] "]
    assert "reached its budget of 8 tokens" in out.err


def test_rag_ask_refuses_another_encoders_index_and_an_empty_one(checkpoints):
    import rag

    ask = ["--index", str(checkpoints / "index"), "--model", f"hf:{checkpoints / 'chat'}", "question?"]
    with pytest.raises(IndexFolderError, match="written by another encoder"):
        rag.ask_main([*ask, "--encoder", f"hf:{checkpoints / 'bert1'}"])
    empty = VectorIndex.create(32, "f" * 64)
    empty.save(checkpoints / "empty")
    with pytest.raises(IndexFolderError, match="the index is empty"):
        rag.ask_main(["--index", str(checkpoints / "empty"), "--model", f"hf:{checkpoints / 'chat'}", "q?"])
