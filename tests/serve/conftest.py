"""The serve tests run tiny models: one torch thread is fastest for them (and on a loaded machine, several
threads spin against each other: a 2 ms forward takes 0.7 s with 2 threads on 2 busy cores)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from serve_helpers import Server, served_models


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The app with every tiny model, an API key and small limits, served for the session's tests."""
    from transformers_zoo.serve.app import create_app

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    running = Server(create_app(served_models(), api_key="test-key", max_queue=4, max_batch=4,
                                max_body_bytes=20_000))
    yield running
    running.stop()
    torch.set_num_threads(before)
