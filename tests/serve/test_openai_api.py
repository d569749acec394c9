"""The official `openai` client against the app on 127.0.0.1: models, completions (plain and streamed), embeddings,
and the answers checked against the library's own greedy decoding and sentence encoder."""

from __future__ import annotations

import numpy as np
import openai
import pytest
from serve_helpers import answer_alone

from transformers_zoo.tokenizers import chat


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="test-key", max_retries=0, timeout=60)


def greedy_text(server, prompt: str | list[dict], n: int) -> tuple[str, int, int]:
    """What the model answers alone to a prompt or a conversation: the text, the prompt's and the answer's token
    counts."""
    served = server.app.state.models["lm"]
    tok = served.tokenizer
    ids = tok.encode_prompt(prompt) if isinstance(prompt, str) else chat.encode_chat(tok, prompt)
    text, n_new = answer_alone(served, ids, n, {tok.eos_id} if isinstance(prompt, str) else chat.stop_ids(tok))
    return text, len(ids), n_new


def test_models_lists_every_model_with_what_it_serves(client):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"lm", "rag", "plain", "mt", "bert", "docs"}
    assert {"completions", "chat"} <= set(models["lm"].capabilities) and "chat" not in models["plain"].capabilities
    assert "completions" in models["lm"].capabilities and "translate" in models["mt"].capabilities
    assert {"embeddings", "fill-mask", "classify"} <= set(models["bert"].capabilities)
    assert "search" in models["docs"].capabilities
    assert client.models.retrieve("mt").family == "encoder_decoder"


def test_completion_is_the_greedy_answer_with_usage(server, client):
    want, n_prompt, n_new = greedy_text(server, "the cat", 12)
    out = client.completions.create(model="lm", prompt="the cat", max_tokens=12, temperature=0)
    assert out.choices[0].text == want and out.choices[0].finish_reason == "length"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (n_prompt, n_new)
    assert out.usage.total_tokens == n_prompt + n_new


@pytest.fixture
def paced(server, monkeypatch):
    """Each decoding step of "lm" takes at least 5 ms, so the event loop hands every token out before the next one
    exists. Unpaced, the tiny model can finish between two wake-ups of the loop on an idle machine, and its tokens
    then share one chunk (as they should when a client reads slower than the model writes)."""
    import time

    model = server.app.state.engines["lm"].model
    step = model.decode_step
    monkeypatch.setattr(model, "decode_step", lambda *a, **k: time.sleep(0.005) or step(*a, **k))


def test_streamed_completion_equals_the_plain_one_and_ends_with_usage(server, client, paced):
    want, n_prompt, n_new = greedy_text(server, "a dog", 15)
    stream = client.completions.create(model="lm", prompt="a dog", max_tokens=15, temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    assert len(chunks) > 2  # token by token, not one block
    assert "".join(c.choices[0].text for c in chunks if c.choices) == want
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == n_new and chunks[-1].usage.prompt_tokens == n_prompt


def test_stop_string_cuts_the_answer_and_n_samples_differ(server, client):
    want, _, _ = greedy_text(server, "hello", 20)
    stop = want[5:7]
    out = client.completions.create(model="lm", prompt="hello", max_tokens=20, temperature=0, stop=[stop])
    assert out.choices[0].text == want[: want.index(stop)] and out.choices[0].finish_reason == "stop"
    sampled = client.completions.create(model="lm", prompt="hello", max_tokens=20, temperature=1.5, n=3, seed=1)
    assert sorted(c.index for c in sampled.choices) == [0, 1, 2]
    assert len({c.text for c in sampled.choices}) > 1
    again = client.completions.create(model="lm", prompt="hello", max_tokens=20, temperature=1.5, n=3, seed=1)
    assert [c.text for c in again.choices] == [c.text for c in sampled.choices]  # a seed makes it reproducible


def test_embeddings_are_the_sentence_encoders_vectors(server, client):
    texts = ["the cat sat", "a dog ran in the park"]
    out = client.embeddings.create(model="bert", input=texts)  # the client asks for base64 and decodes it
    want = server.app.state.models["bert"].encoder.encode(texts)
    got = np.array([d.embedding for d in out.data])
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-6)
    assert out.usage.prompt_tokens == sum(len(t) + 2 for t in texts)  # characters plus [CLS] and [SEP]
    floats = client.embeddings.create(model="bert", input="hello", encoding_format="float")
    assert np.allclose(floats.data[0].embedding, server.app.state.models["bert"].encoder.encode("hello")[0],
                       atol=1e-6)


CONVERSATION = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello, cat?"}]


def test_chat_answers_the_rendered_conversation_greedily(server, client):
    want, n_prompt, n_new = greedy_text(server, CONVERSATION, 20)
    out = client.chat.completions.create(model="lm", messages=CONVERSATION, max_tokens=20, temperature=0)
    assert out.choices[0].message.role == "assistant" and out.choices[0].message.content == want
    assert out.usage.prompt_tokens == n_prompt and out.usage.completion_tokens == n_new
    assert out.choices[0].finish_reason == ("length" if n_new == 20 else "stop")


def test_streamed_chat_sends_role_then_content_pieces(server, client, paced):
    want, _, _ = greedy_text(server, CONVERSATION, 20)
    chunks = list(client.chat.completions.create(model="lm", messages=CONVERSATION, max_tokens=20, temperature=0,
                                                 stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == want
    assert chunks[-1].choices[0].finish_reason in ("stop", "length") and len(chunks) > 3


def test_chat_needs_a_chat_template(client):
    with pytest.raises(openai.BadRequestError, match="chat template"):
        client.chat.completions.create(model="plain", messages=[{"role": "user", "content": "hi"}])


def test_streamed_chat_with_n_choices_keeps_each_choice_apart(client):
    chunks = list(client.chat.completions.create(model="lm", messages=CONVERSATION, max_tokens=10, temperature=1.2,
                                                 n=2, seed=5, stream=True))
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    plain = client.chat.completions.create(model="lm", messages=CONVERSATION, max_tokens=10, temperature=1.2, n=2,
                                           seed=5)
    assert texts == {c.index: c.message.content for c in plain.choices}  # the same seeded draws, streamed or not


def test_chat_with_an_index_answers_from_numbered_sources(server, client):
    from transformers_zoo.retrieval.rag import grounded_prompt

    question = [{"role": "user", "content": "the cat"}]
    resp = client.chat.completions.create(model="rag", messages=question, max_tokens=6, temperature=0,
                                          extra_body={"index": "docs", "k": 2})
    sources = resp.to_dict()["sources"]
    models = server.app.state.models
    rag, docs = models["rag"], models["docs"]
    hits = docs.index.search(docs.encoder.encode(["the cat"]), 2)[0]  # the library's retrieval and prompt
    assert [(s["n"], s["id"], s["text"]) for s in sources] == [(n, h.id, h.text) for n, h in enumerate(hits, 1)]
    prompt = grounded_prompt(rag.tokenizer, "the cat", hits, context=rag.context, reply_room=6)
    assert "[2] " + hits[1].text in prompt.system and prompt.user == "the cat"
    want, _ = answer_alone(rag, chat.encode_chat(rag.tokenizer, prompt.messages), 6, chat.stop_ids(rag.tokenizer))
    assert resp.choices[0].message.content == want and resp.usage.prompt_tokens == len(
        chat.encode_chat(rag.tokenizer, prompt.messages))
    for model, index, needle, status in (("rag", "nowhere", "does not exist", 404), ("rag", "bert", "search", 400),
                                         ("lm", "docs", "does not fit the context", 400)):
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model=model, messages=question, max_tokens=6, extra_body={"index": index})
        assert err.value.status_code == status and needle in err.value.message
    assert client.chat.completions.create(model="rag", messages=question, max_tokens=2).choices  # still serving
