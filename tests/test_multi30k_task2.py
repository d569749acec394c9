"""Multi30k task 2: the shared copy's captions, a checksummed download over loopback, a corrupted one refused."""

from __future__ import annotations

import pytest

from transformers_zoo import corpora
from transformers_zoo.corpora import DataError, load_multi30k_captions

pytestmark = pytest.mark.usefixtures("no_internet")
DATASET = "multi30k-task2"


def serve(server, shared_data_dir, names):
    (server.root / DATASET).mkdir(exist_ok=True)
    for name in names:
        (server.root / DATASET / name).write_bytes((shared_data_dir / DATASET / name).read_bytes())


def test_captions_of_the_shared_copy(data_copy):
    data = data_copy(DATASET)
    en = load_multi30k_captions(data, "en")
    assert {s: len(images) for s, images in en.items()} == {"train": 29000, "val": 1014, "test_2016": 1000}
    assert all(len(caps) == 5 and all(caps) for caps in en["test_2016"])
    de = load_multi30k_captions(data, "de", ("test_2016",))
    assert de["test_2016"][0][0] == "Der Mann trägt eine orange Wollmütze."
    with pytest.raises(DataError, match="no language 'fr'"):
        load_multi30k_captions(data, "fr")


def test_download_then_offline(server, shared_data_dir, tmp_path):
    names = [f"test_2016.{k}.de.gz" for k in range(1, 6)]
    serve(server, shared_data_dir, names)
    cache = tmp_path / "cache"
    assert len(load_multi30k_captions(cache, "de", ("test_2016",))["test_2016"]) == 1000
    assert sorted(p.name for p in (cache / DATASET).iterdir()) == names  # only what was asked, no temp files
    server.shutdown()
    server.server_close()
    corpora.downloads._VERIFIED.clear()
    assert load_multi30k_captions(cache, "de", ("test_2016",))["test_2016"][0][0].startswith("Der Mann")


def test_env_var_with_a_dash_in_the_name(server, shared_data_dir, tmp_path, monkeypatch):
    serve(server, shared_data_dir, ["val.1.en.gz"])
    monkeypatch.setitem(corpora.BASE_URLS, DATASET, "http://127.0.0.1:9/nowhere")
    monkeypatch.setenv("TZOO_DATA_URL_MULTI30K_TASK2", f"http://127.0.0.1:{server.server_port}/{DATASET}")
    assert (corpora.fetch(DATASET, tmp_path, ["val.1.en.gz"]) / "val.1.en.gz").is_file()


def test_corrupted_download_leaves_nothing(server, shared_data_dir, tmp_path):
    serve(server, shared_data_dir, [f"val.{k}.en.gz" for k in range(1, 6)])
    served = server.root / DATASET / "val.3.en.gz"
    data = bytearray(served.read_bytes())
    data[100] ^= 1
    served.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"val\.3\.en\.gz: download from .* rejected, nothing saved: sha256 mismatch"):
        load_multi30k_captions(tmp_path / "cache", "en", ("val",))
    assert not (tmp_path / "cache" / DATASET).exists()
