"""The serve tests run tiny models: one torch thread is fastest for them (and on a loaded machine, several
threads spin against each other: a 2 ms forward takes 0.7 s with 2 threads on 2 busy cores)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
