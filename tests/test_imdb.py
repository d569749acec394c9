"""IMDB: the shared copy's splits, the one place markup is cleaned, readers' errors, and the tarball download
(a small tarball made here, served on loopback, repacked into the same records as the shared copy)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from pathlib import Path

import pytest

from transformers_zoo import corpora
from transformers_zoo.corpora import DataError, clean_review, load_imdb, read_jsonl

pytestmark = pytest.mark.usefixtures("no_internet")


def test_shared_copy_splits_and_labels(shared_data_dir):
    train, test = load_imdb("train", shared_data_dir), load_imdb("test", shared_data_dir)
    unsup = load_imdb("unsup", shared_data_dir)
    assert (len(train), len(test), len(unsup)) == (25_000, 25_000, 50_000)
    for split in (train, test):
        assert [r.label for r in split].count("neg") == 12_500 and split[0].label == "neg" and split[-1].label == "pos"
        assert all(1 <= r.rating <= 4 if r.label == "neg" else 7 <= r.rating <= 10 for r in split)
    assert all(r.label is None and r.rating == 0 for r in unsup)
    assert not any("<br" in r.text.lower() for r in train[:2000])  # markup cleaned on the way in
    with pytest.raises(DataError, match="no split 'dev'"):
        load_imdb("dev", shared_data_dir)


def test_clean_review_turns_breaks_into_newlines():
    raw = "Great.<br /><br />Really <BR/>great!<br />  <br />The end.  "
    assert clean_review(raw) == "Great.\nReally\ngreat!\nThe end."
    assert clean_review("no markup here") == "no markup here"


def test_reader_names_file_and_line(tmp_path):
    good = json.dumps({"text": "fine"})
    bad_json = tmp_path / "c.jsonl"
    bad_json.write_text(f"{good}\n{good}\n{{\"text\": \"cut off\n")
    with pytest.raises(DataError, match=r"c\.jsonl:3: not valid JSON"):
        read_jsonl(bad_json)
    bad_utf8 = tmp_path / "u.jsonl.gz"
    bad_utf8.write_bytes(gzip.compress(f"{good}\n".encode() + b'{"text": "caf\xe9"}\n'))
    with pytest.raises(DataError, match=r"u\.jsonl\.gz:2: not valid UTF-8 \(byte 0xe9\)"):
        read_jsonl(bad_utf8)
    no_field = tmp_path / "f.jsonl"
    no_field.write_text(f'{good}\n\n{{"body": "x"}}\n')
    with pytest.raises(DataError, match=r"f\.jsonl:3: no field 'text'"):
        read_jsonl(no_field)
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match=r"e\.jsonl: no JSON objects \(empty corpus\)"):
        read_jsonl(empty)


def test_bad_label_in_a_split_names_the_line(tmp_path, monkeypatch):
    folder = tmp_path / "imdb"
    folder.mkdir()
    lines = [{"id": 0, "rating": 3, "label": "neg", "text": "a"}, {"id": 1, "rating": 9, "label": "great", "text": "b"}]
    (folder / "train.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))
    monkeypatch.setattr(corpora.downloads, "_verify", lambda *args: None)  # a file of our own, not the canonical one
    with pytest.raises(DataError, match=r"train\.jsonl\.gz:2: label 'great' is not one of \('neg', 'pos'\)"):
        load_imdb("train", tmp_path)


# ---------------------------------------------------------------------------------------------------------
# The tarball path
# ---------------------------------------------------------------------------------------------------------

PER_CLASS = 4  # records per (split, label) in the small tarball


def _shared_lines(shared_data_dir: Path, split: str) -> list[bytes]:
    return gzip.decompress((shared_data_dir / "imdb" / f"{split}.jsonl.gz").read_bytes()).split(b"\n")[:-1]


def _small_release(shared_data_dir: Path) -> tuple[bytes, dict[str, bytes]]:
    """A tarball laid out as aclImdb_v1.tar.gz holding a few of the shared copy's reviews (members in random
    order, plus files the loader must ignore), and the JSON lines each split must come out as."""
    expected: dict[str, bytes] = {}
    members: list[tuple[str, bytes]] = [("aclImdb/README", b"readme"), ("aclImdb/imdb.vocab", b"the\nfilm\n"),
                                        ("aclImdb/train/labeledBow.feat", b"0 0:1\n"),
                                        ("aclImdb/train/urls_pos.txt", b"http://example/\n")]
    for split in ("train", "test", "unsup"):
        lines = _shared_lines(shared_data_dir, split)
        rows = [json.loads(line) for line in lines]
        labels = [None] if split == "unsup" else ["neg", "pos"]
        chosen = [i for label in labels for i in [j for j, r in enumerate(rows) if r["label"] == label][:PER_CLASS]]
        # ids 0..3 and a two-digit id, so numeric order (not the name's) decides
        chosen.append([j for j, r in enumerate(rows) if r["label"] == labels[-1] and r["id"] == 10][0])
        chosen.sort()
        expected[split] = b"".join(lines[i] + b"\n" for i in chosen)
        for i in chosen:
            r = rows[i]
            folder = f"aclImdb/{'train' if split == 'unsup' else split}/{r['label'] or 'unsup'}"
            members.append((f"{folder}/{r['id']}_{r['rating']}.txt", r["text"].encode()))
    random.Random(0).shuffle(members)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue(), expected


def _serve_release(server, monkeypatch, tarball: bytes, expected: dict[str, bytes]) -> None:
    (server.root / "imdb").mkdir(exist_ok=True)
    (server.root / "imdb" / corpora.IMDB_TARBALL).write_bytes(tarball)
    monkeypatch.setattr(corpora.imdb, "IMDB_TARBALL_BYTES", len(tarball))
    monkeypatch.setattr(corpora.imdb, "IMDB_TARBALL_MD5", hashlib.md5(tarball).hexdigest())
    for split, body in expected.items():
        name = f"{split}.jsonl.gz"
        monkeypatch.setitem(corpora.SHA256["imdb"], name, "0" * 64)  # only the content digest can match
        monkeypatch.setitem(corpora.CONTENT_SHA256, ("imdb", name), hashlib.sha256(body).hexdigest())


def test_tarball_download_builds_the_shared_records(server, shared_data_dir, tmp_path, monkeypatch):
    tarball, expected = _small_release(shared_data_dir)
    _serve_release(server, monkeypatch, tarball, expected)
    cache = tmp_path / "cache"
    train = load_imdb("train", cache)
    assert [r.id for r in train] == [0, 1, 2, 3, 0, 1, 2, 3, 10] and train[0].label == "neg"
    for split, body in expected.items():
        assert gzip.decompress((cache / "imdb" / f"{split}.jsonl.gz").read_bytes()) == body
    assert sorted(p.name for p in (cache / "imdb").iterdir()) == ["test.jsonl.gz", "train.jsonl.gz",
                                                                  "unsup.jsonl.gz"]  # the tarball is gone
    (server.root / "imdb" / corpora.IMDB_TARBALL).unlink()  # offline now: the cache serves
    assert [r.text for r in load_imdb("unsup", cache)] == [r.text for r in load_imdb("unsup", cache)]


def test_tarball_with_wrong_checksum_leaves_nothing(server, shared_data_dir, tmp_path, monkeypatch):
    tarball, expected = _small_release(shared_data_dir)
    _serve_release(server, monkeypatch, tarball, expected)
    monkeypatch.setattr(corpora.imdb, "IMDB_TARBALL_MD5", "0" * 32)
    with pytest.raises(DataError, match=r"aclImdb_v1\.tar\.gz: download from http://127\.0\.0\.1:\d+/imdb/"
                                        r"aclImdb_v1\.tar\.gz rejected, nothing saved: expected [\d,]+ bytes with MD5"):
        load_imdb("train", tmp_path / "cache")
    assert not (tmp_path / "cache" / "imdb").exists()


def test_tarball_whose_records_differ_is_rejected(server, shared_data_dir, tmp_path, monkeypatch):
    tarball, expected = _small_release(shared_data_dir)
    _serve_release(server, monkeypatch, tarball, {**expected, "train": expected["train"] + b"{}\n"})
    with pytest.raises(DataError, match=r"train\.jsonl\.gz: download from .* rejected, nothing saved: sha256 mismatch"):
        load_imdb("train", tmp_path / "cache")
    assert not (tmp_path / "cache" / "imdb").exists()
