"""Tiny served models of every family, a real uvicorn server in a thread, and greedy answers to check against."""

from __future__ import annotations

import torch

TEXT = "the cat sat on the mat. a dog ran in the park! hello, world? [MASK]"


def tiny_config(**overrides):
    from transformers_zoo import ModelConfig

    base = dict(d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=128, dropout=0.0)
    return ModelConfig(**{**base, **overrides})


def served_models() -> list:
    """One tiny model of each family (random weights, fixed seeds) with a character tokenizer, as the server
    sees them: a decoder-only LM with our chat template, one without, an encoder-decoder translator, an encoder
    that fills masks, classifies and embeds, and the same encoder with an index to search."""
    from transformers_zoo import DecoderOnly, EncoderDecoder, EncoderOnly
    from transformers_zoo.retrieval import SentenceEncoder
    from transformers_zoo.retrieval.index import VectorIndex
    from transformers_zoo.serve.models import ServedModel
    from transformers_zoo.tasks.translation.settings import SearchSettings
    from transformers_zoo.tokenizers import CharTokenizer
    from transformers_zoo.tokenizers.chat import with_chat_tokens

    tok = CharTokenizer.train(TEXT.replace("[MASK]", ""))
    chat_tok = with_chat_tokens(tok)
    torch.manual_seed(0)
    lm = DecoderOnly(tiny_config(vocab_size=chat_tok.vocab_size, positional="rope")).eval()
    with torch.no_grad():  # random weights answer UNK again and again (it decodes to nothing): rule it out
        lm.lm_head.weight[tok.unk_id] = 0.0
    torch.manual_seed(4)  # a longer context, for answers from an index's passages (RAG)
    rag = DecoderOnly(tiny_config(vocab_size=chat_tok.vocab_size, positional="rope", max_len=1024)).eval()
    with torch.no_grad():
        rag.lm_head.weight[tok.unk_id] = 0.0
    torch.manual_seed(3)
    plain = DecoderOnly(tiny_config(vocab_size=tok.vocab_size, positional="learned")).eval()
    torch.manual_seed(1)
    mt = EncoderDecoder(tiny_config(vocab_size=tok.vocab_size, n_encoder_layers=1)).eval()
    torch.manual_seed(2)
    bert = EncoderOnly(tiny_config(vocab_size=tok.vocab_size, n_classes=2, norm_first=False, pooling="mean")).eval()
    encoder = SentenceEncoder(bert, tok, normalize=True)
    docs = ["the cat sat", "a dog ran", "hello world", "on the mat"]
    index = VectorIndex.create(encoder.dim, encoder.fingerprint)
    index.add([f"d{i}" for i in range(len(docs))], docs, encoder.encode(docs))
    return [ServedModel("lm", "decoder_only", lm, chat_tok, "test"),
            ServedModel("rag", "decoder_only", rag, chat_tok, "test"),
            ServedModel("plain", "decoder_only", plain, tok, "test"),
            ServedModel("mt", "encoder_decoder", mt, tok, "test", target_tokenizer=tok, search=SearchSettings()),
            ServedModel("bert", "encoder_only", bert, tok, "test", encoder=encoder, fills_masks=True,
                        labels=["negative", "positive"]),
            ServedModel("docs", "encoder_only", bert, tok, "test", encoder=encoder, index=index)]


def answer_alone(served, ids: list[int], n: int, stops: set[int]) -> tuple[str, int]:
    """What `served` answers to prompt `ids` alone, greedily: the text up to the first stop id, and its tokens."""
    from transformers_zoo.generation import greedy

    out = greedy(served.model, served.model.init_cache(1), torch.tensor([ids]), n)[0].tolist()
    tokens = out[: min([out.index(s) for s in stops if s in out], default=n)]
    return served.tokenizer.decode(tokens), len(tokens)


class Server:
    """A real uvicorn server on 127.0.0.1 (a free port) in a thread of the test process."""

    def __init__(self, app):
        import socket
        import threading

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(2000):
            if self.server.started:
                break
            threading.Event().wait(0.01)
        assert self.server.started, "uvicorn did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
