"""Shared fixtures: where the shared data sets live, and temp copies of them (tests never write there)."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def tokenizer_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Trained tokenizers are cached in a temp folder of the session (``$TZOO_CACHE_DIR``, which recipe
    subprocesses inherit), never in the user's ``~/.cache``."""
    from transformers_zoo.runs import CACHE_ENV

    path = tmp_path_factory.mktemp("tzoo-cache")
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(path)
    yield path
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared read-only data: ``$TZOO_DATA_DIR``, else ``<repo>/../shared/data``; skip if absent."""
    env = os.environ.get("TZOO_DATA_DIR")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set TZOO_DATA_DIR to a folder holding the data sets)")
    return path


@pytest.fixture
def data_copy(tmp_path: Path, shared_data_dir: Path) -> Callable[..., Path]:
    """``data_copy("sst2/dev.tsv", "multi30k", ...)`` copies files or folders into a temp data dir, returned.

    Call it again to add more; every call returns the same folder.
    """
    root = tmp_path / "data"

    def copy(*relpaths: str) -> Path:
        root.mkdir(exist_ok=True)
        for rel in relpaths:
            src, dst = shared_data_dir / rel, root / rel
            if not src.exists():
                pytest.skip(f"{src} is missing from the shared data")
            # copyfile, not copytree: the shared copy is read-only and its modes must not follow
            for file in sorted(src.rglob("*")) if src.is_dir() else [src]:
                if file.is_file():
                    target = dst / file.relative_to(src) if src.is_dir() else dst
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(file, target)
        return root

    return copy


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A loopback HTTP server over ``served/`` (``served/<dataset>/...``); corpora.BASE_URLS point at it."""
    from transformers_zoo import corpora

    root = tmp_path / "served"
    root.mkdir()
    handler = lambda *a, **k: _Quiet(*a, directory=str(root), **k)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    for name in corpora.BASE_URLS:
        monkeypatch.setitem(corpora.BASE_URLS, name, f"http://127.0.0.1:{httpd.server_port}/{name}")
    httpd.root = root
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def no_internet(monkeypatch):
    """Point every download at a closed loopback port: no test may reach the real internet."""
    from transformers_zoo import corpora

    for name in corpora.BASE_URLS:
        monkeypatch.setitem(corpora.BASE_URLS, name, "http://127.0.0.1:9/nowhere")
        monkeypatch.delenv(f"TZOO_DATA_URL_{name.upper()}", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
