"""chat: a session streams text pieces (whole UTF-8 characters), stops at the template's stop ids, keeps the
history within the context (oldest turns dropped, the system prompt kept, said), reuses the previous turn's KV
cache without changing the reply; and `gpt.py chat` driven through a pseudo-terminal."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import torch
from test_chat_template import TEXTS

from transformers_zoo import DecoderOnly, ModelConfig
from transformers_zoo.chat import ChatSession, Notice, Sampling, TextStream
from transformers_zoo.generation import greedy
from transformers_zoo.tokenizers import CharTokenizer
from transformers_zoo.tokenizers.chat import ConversationError, encode_chat, with_chat_tokens

REPO = Path(__file__).resolve().parents[1]


def tiny_chat(seed: int = 0, max_len: int = 256):
    """Our ChatML on a char tokenizer and a tiny random decoder (RoPE, so the context is max_len)."""
    tok = with_chat_tokens(CharTokenizer.train("".join(TEXTS) + "\n"))
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, n_kv_heads=1, n_layers=2, max_len=max_len,
                      dropout=0.0, positional="rope", norm="rmsnorm", ffn="swiglu", pad_id=tok.pad_id)
    model = DecoderOnly(cfg).eval()
    with torch.no_grad():  # larger random weights: greedy replies that vary from token to token
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model, tok


def reply(session: ChatSession, text: str) -> tuple[str, list[str]]:
    pieces = list(session.reply(text))
    return "".join(p for p in pieces if isinstance(p, str)), [p.text for p in pieces if isinstance(p, Notice)]


def test_text_stream_gives_whole_characters(tmp_path):
    pytest.importorskip("tokenizers")
    from test_chat_template import LLAMA3, write_checkpoint_tokenizer

    from transformers_zoo.tokenizers import HFJsonTokenizer

    tok = HFJsonTokenizer.from_hf(write_checkpoint_tokenizer(tmp_path, LLAMA3, "<s>", "</s>"))
    text = "Ein Mann fährt Fahrrad 🚲 – schön!"
    ids = tok.encode(text)
    stream = TextStream(tok)
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)
    assert sum(1 for p in pieces if p) > 5  # it streams: many pieces, not one at the end


def test_reply_is_greedy_streamed_and_stops_at_a_stop_id():
    model, tok = tiny_chat(seed=3)
    question = [{"role": "user", "content": "a man rides a bike"}]
    prompt = torch.tensor([encode_chat(tok, question)])
    ids = greedy(model, model.init_cache(1), prompt, 12)[0].tolist()  # the reference: no stop id among them
    session = ChatSession(model, tok, sampling=Sampling(temperature=0, max_new_tokens=12))
    pieces = list(session.reply("a man rides a bike"))
    assert "".join(p for p in pieces if isinstance(p, str)) == tok.decode(ids) and len(pieces) > 5
    assert pieces[-1] == Notice("the reply reached its budget of 12 tokens")
    # told that a token of that reply ends a turn, the session stops there, without it
    k = next(i for i in range(2, 12) if ids[i] not in ids[:i])
    session = ChatSession(model, tok, sampling=Sampling(temperature=0, max_new_tokens=12))
    session.stops = {ids[k]}
    short, notices = reply(session, "a man rides a bike")
    assert short == tok.decode(ids[:k]) and notices == []
    assert session.messages == [*question, {"role": "assistant", "content": short}]


def test_oldest_turns_are_dropped_the_system_prompt_kept():
    model, tok = tiny_chat(seed=3, max_len=160)
    session = ChatSession(model, tok, system="Be brief.", sampling=Sampling(temperature=0, max_new_tokens=10))
    said = []
    for turn in range(6):
        _, notices = reply(session, f"question {turn}: a dog runs")
        said += notices
    assert any(n.startswith("dropped the 2 oldest messages") for n in said)
    conversation = session.conversation()
    assert conversation[0] == {"role": "system", "content": "Be brief."}
    assert conversation[1]["role"] == "user" and conversation[-1]["role"] == "assistant"
    assert conversation[-2]["content"] == "question 5: a dog runs"
    assert conversation[1]["content"] != "question 0: a dog runs"
    # a message that cannot fit even alone: one line, and the history is as it was
    before = list(session.messages)
    with pytest.raises(ConversationError, match="the context holds 160") as err:
        list(session.reply("x" * 200))
    assert "\n" not in str(err.value) and session.messages == before


def test_cached_turns_give_the_reply_a_fresh_session_gives():
    model, tok = tiny_chat(seed=3)
    cached = ChatSession(model, tok, system="Be brief.", sampling=Sampling(temperature=0, max_new_tokens=8))
    first, _ = reply(cached, "a man rides a bike")
    held = len(cached._cached)
    assert held == cached._cache.length  # the ids it says the cache holds are what the cache holds
    second, _ = reply(cached, "two cats sleep")
    fresh = ChatSession(model, tok, system="Be brief.", sampling=Sampling(temperature=0, max_new_tokens=8))
    fresh.messages = [{"role": "user", "content": "a man rides a bike"}, {"role": "assistant", "content": first}]
    assert reply(fresh, "two cats sleep")[0] == second
    assert held > 0 and cached._cached[:held] == fresh._cached[:held]  # the first turn's cache was kept
    # /reset keeps the system prompt's cache; sampling with a seed is reproducible
    a = ChatSession(model, tok, sampling=Sampling(temperature=1.0, top_k=20, top_p=0.9, max_new_tokens=8, seed=3))
    b = ChatSession(model, tok, sampling=Sampling(temperature=1.0, top_k=20, top_p=0.9, max_new_tokens=8, seed=3))
    assert reply(a, "hi")[0] == reply(b, "hi")[0]


def test_a_closed_reply_keeps_what_was_said():
    model, tok = tiny_chat(seed=3)
    session = ChatSession(model, tok, sampling=Sampling(temperature=0, max_new_tokens=20))
    pieces = session.reply("a man rides a bike")
    got = next(pieces) + next(pieces)
    pieces.close()  # what Ctrl-C does
    assert session.messages[-1] == {"role": "assistant", "content": got}
    assert len(session._cached) == session._cache.length
    again, _ = reply(session, "and then?")  # the session goes on, its cache intact
    assert again and session.messages[-2]["content"] == "and then?"


def read_until(fd: int, marker: bytes, timeout: float = 90.0) -> bytes:
    """Terminal output up to `marker`, or fail after `timeout`."""
    out = b""
    deadline = time.monotonic() + timeout
    while marker not in out:
        assert time.monotonic() < deadline, f"no {marker!r} in {out[-300:]!r}"
        out += os.read(fd, 4096)
    return out


def test_chat_command_through_a_pseudo_terminal(tmp_path):
    """`gpt.py chat` on a tiny random instruct-like checkpoint, greedy (its reply never ends on its own: each
    is --max-new-tokens long), with the terminal as its controlling terminal: Ctrl-C is the line
    discipline's SIGINT, Ctrl-D its end of file."""
    pytest.importorskip("transformers")
    import fcntl
    import pty
    import signal
    import subprocess
    import termios

    from chat_checkpoint import write_tiny_chat_llama

    checkpoint = write_tiny_chat_llama(tmp_path / "chat", max_positions=400, layers=4, hidden=256)
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "recipes" / "gpt.py"), "chat", "--init", f"hf:{checkpoint}", "--temperature", "0",
         "--max-new-tokens", "200", "--system", "Be brief.", "--threads", "1"],
        stdin=child, stdout=child, stderr=child, cwd=REPO, start_new_session=True,
        preexec_fn=lambda: (fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # (a background job ignores SIGINT: undo)
                            signal.signal(signal.SIGINT, signal.SIG_DFL)))
    os.close(child)
    try:
        read_until(main, b">>> ")
        os.write(main, b"hello there\n")
        streamed = read_until(main, b"hello there\r\n")  # the echo of the question
        while len(streamed.split(b"hello there\r\n", 1)[1]) < 12:  # pieces of the reply arrive ...
            streamed += os.read(main, 4096)
        os.write(main, b"\x03")  # ... before it ends: Ctrl-C stops it, the session goes on
        turn = read_until(main, b">>> ")
        assert b"[reply stopped]" in turn and b"budget" not in streamed + turn
        os.write(main, b"/system Answer in one word.\n")
        assert b"[system prompt: Answer in one word.; conversation reset]" in read_until(main, b">>> ")
        os.write(main, b"a second question\n")  # whole turns: 200 tokens each, then the budget notice
        assert b"[the reply reached its budget of 200 tokens]" in read_until(main, b">>> ")
        os.write(main, b"and a third\n")  # the history no longer leaves room for a reply: the oldest turn goes
        turn = read_until(main, b">>> ")
        assert b"[dropped the 2 oldest messages to fit the context of 400 tokens]" in turn
        assert b"reached its budget" in turn
        os.write(main, b"/reset\n")
        assert b"[conversation reset]" in read_until(main, b">>> ")
        os.write(main, b"/help\n")
        assert b"/system TEXT" in read_until(main, b">>> ")
        os.write(main, b"\x04")  # Ctrl-D at the prompt: a clean exit
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        os.close(main)


def test_one_answer_with_prompt_and_a_model_without_template(tmp_path, capsys):
    pytest.importorskip("transformers")
    from chat_checkpoint import write_tiny_chat_llama

    from transformers_zoo.cli.chat import chat_main

    checkpoint = write_tiny_chat_llama(tmp_path / "chat")
    assert chat_main(["--init", f"hf:{checkpoint}", "--prompt", "hello", "--max-new-tokens", "5",
                      "--temperature", "0"]) == 0
    out = capsys.readouterr()
    assert out.out.endswith("\n") and len(out.out) > 1 and "budget of 5 tokens" in out.err
    # --dtype bfloat16: the weights, the KV cache and the reply in bf16
    import argparse

    from transformers_zoo.cli.chat import load_chat_model
    args = argparse.Namespace(init=f"hf:{checkpoint}", checkpoint=None, data_dir=None, device="cpu", threads=None,
                              dtype="bfloat16", quantize=None)
    bf16, _ = load_chat_model(args, None)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert chat_main(["--init", f"hf:{checkpoint}", "--prompt", "hello", "--max-new-tokens", "5",
                      "--temperature", "0", "--dtype", "bfloat16"]) == 0
    assert len(capsys.readouterr().out) > 1
    # --quantize int8: every linear layer int8, and the same greedy reply as the float model's on this tiny one
    from transformers_zoo.modules.quantize import Int8Linear

    int8, _ = load_chat_model(argparse.Namespace(**{**vars(args), "dtype": "float32", "quantize": "int8"}), None)
    assert any(isinstance(m, Int8Linear) for m in int8.modules())
    assert not any(isinstance(m, torch.nn.Linear) for m in int8.modules())
    dynamic, _ = load_chat_model(argparse.Namespace(**{**vars(args), "dtype": "float32", "quantize": "int8-dynamic"}),
                                 None)  # int8 activations too
    assert not any(isinstance(m, torch.nn.Linear) for m in dynamic.modules())
    replies = []
    for flags in ([], ["--quantize", "int8"], ["--quantize", "int8-dynamic"]):
        assert chat_main(["--init", f"hf:{checkpoint}", "--prompt", "hello", "--max-new-tokens", "5",
                          "--temperature", "0", *flags]) == 0
        replies.append(capsys.readouterr().out)
    assert replies[0] == replies[1] == replies[2] and len(replies[1]) > 1
    model, _ = tiny_chat()
    with pytest.raises(ConversationError, match="no chat template.*recipes/sft.py"):
        ChatSession(model, CharTokenizer.train("abc"))
