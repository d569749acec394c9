"""The zoo's own endpoints against the library's functions on the same tiny models: translate (n-best beam
search), fill-mask, classify, search and attention weights of every family."""

from __future__ import annotations

import httpx2 as httpx  # the HTTP client the openai package is built on
import pytest
import torch

from transformers_zoo.generation import beam_search
from transformers_zoo.tasks.mlm import fill_mask


@pytest.fixture(scope="module")
def zoo(server):
    with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": "Bearer test-key"}) as client:
        def call(path: str, **body) -> dict:
            response = client.post(f"/zoo/{path}", json=body)
            assert response.status_code == 200, response.text
            return response.json()

        yield call


def test_translate_returns_the_beam_searchs_n_best_list(server, zoo):
    out = zoo("translate", model="mt", text="the cat sat", beam_size=4, n_best=3, max_tokens=12)["translations"]
    served = server.app.state.models["mt"]
    tok, model = served.tokenizer, served.model
    src = torch.tensor([[*tok.encode("the cat sat"), tok.eos_id]])
    hyps = beam_search(model, model.init_cache(src), torch.tensor([[tok.bos_id]]), 12, tok.eos_id, beam_size=4,
                       n_best=3)[0]
    assert [t["score"] for t in out] == pytest.approx([h.score for h in hyps], abs=1e-5)
    assert [t["text"] for t in out] == [tok.decode(h.tokens) for h in hyps]
    assert out[0]["score"] >= out[1]["score"] >= out[2]["score"]


def test_fill_mask_and_classify_give_the_models_probabilities(server, zoo):
    masks = zoo("fill-mask", model="bert", text="the [MASK]at sat", top_k=4)["masks"]
    served = server.app.state.models["bert"]
    want = fill_mask(served.model, served.tokenizer, "the [MASK]at sat", 4)
    assert [[(c["token"], round(c["probability"], 5)) for c in m] for m in masks] == \
        [[(t, round(p, 5)) for t, p in m] for m in want]
    results = zoo("classify", model="bert", input=["a dog ran", "hello world"])["results"]
    for text, result in zip(["a dog ran", "hello world"], results, strict=True):
        ids = torch.tensor([[served.tokenizer.cls_id, *served.tokenizer.encode(text), served.tokenizer.sep_id]])
        probs = served.model.classify(ids).softmax(-1)[0].tolist()
        assert list(result["probabilities"].values()) == pytest.approx(probs, abs=1e-5)
        assert result["label"] == ["negative", "positive"][probs.index(max(probs))]


def test_search_finds_the_document_equal_to_the_query(zoo):
    hits = zoo("search", model="docs", query="hello world", k=3)["hits"]
    assert len(hits) == 3 and hits[0]["id"] == "d2" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


@pytest.mark.parametrize("model, names", [("lm", ["self-attention"]), ("bert", ["self-attention"]),
                                          ("mt", ["encoder self-attention", "decoder self-attention",
                                                  "cross-attention"])])
def test_attention_weights_of_every_family(zoo, model, names):
    out = zoo("attention", model=model, text="the cat sat")
    assert [m["name"] for m in out["maps"]] == names
    for m in out["maps"]:
        weights = torch.tensor(m["weights"])  # (layers, heads, queries, keys)
        assert weights.shape == (m["layers"], m["heads"], len(m["queries"]), len(m["keys"]))
        assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-3)  # each row a distribution
        if m["name"] == "decoder self-attention" or model == "lm":  # causal: nothing above the diagonal
            assert weights.triu(1).abs().max() < 1e-6
