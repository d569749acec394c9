"""corpora: the shared data sets from temp copies, splits, readers' errors, and downloads over loopback."""

from __future__ import annotations

import gzip
import hashlib
import random
import statistics
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from transformers_zoo import corpora
from transformers_zoo.corpora import (
    DataError,
    DataWarning,
    check_lengths,
    fetch,
    load_multi30k,
    load_sst2,
    load_tinyshakespeare,
    read_labelled_tsv,
    read_lines,
    read_parallel,
    read_text,
    resolve_data_dir,
    split_text,
)

MULTI30K_COUNTS = {"train": 29000, "val": 1014, "test_2016_flickr": 1000, "test_2017_flickr": 1000,
                   "test_2017_mscoco": 461}


pytestmark = pytest.mark.usefixtures("no_internet")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# The shared data sets, loaded from temp copies
# ---------------------------------------------------------------------------------------------------------


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TZOO_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("TZOO_DATA_DIR")
    assert resolve_data_dir(None) == Path(corpora.__file__).resolve().parents[2] / "data"


def test_multi30k_counts_and_alignment(data_copy):
    data = data_copy("multi30k")
    splits = load_multi30k(data, "en", "de")
    assert {name: len(pairs) for name, pairs in splits.items()} == MULTI30K_COUNTS
    assert list(splits) == list(MULTI30K_COUNTS)  # canonical order first
    assert splits["train"][0] == ("Two young, White males are outside near many bushes.",
                                  "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.")
    fr = load_multi30k(data, "fr", "en")
    assert [en for _, en in fr["val"]] == [en for en, _ in splits["val"]]
    assert all(src.strip() == src and src for src, _ in splits["test_2016_flickr"])


def test_multi30k_discovers_splits_and_languages(tmp_path):
    folder = tmp_path / "multi30k"
    folder.mkdir()
    (folder / "train.xx").write_text("a\nb\n")
    (folder / "train.yy").write_text("A\nB\n")
    with gzip.open(folder / "mine.xx.gz", "wt") as f:
        f.write("c\n")
    with gzip.open(folder / "mine.yy.gz", "wt") as f:
        f.write("C\n")
    (folder / "only_src.xx").write_text("d\n")  # no yy side: not a split
    assert load_multi30k(tmp_path, "xx", "yy") == {"train": [("a", "A"), ("b", "B")], "mine": [("c", "C")]}
    with pytest.raises(DataError, match=r"no files for language 'zz'; languages found: xx, yy"):
        load_multi30k(tmp_path, "xx", "zz")


def test_multi30k_unknown_language_lists_found(data_copy):
    with pytest.raises(DataError, match=r"multi30k: no files for language 'cs'; languages found: de, en, fr"):
        load_multi30k(data_copy("multi30k"), "en", "cs")


def test_tinyshakespeare_and_split_text(data_copy):
    text = load_tinyshakespeare(data_copy("tinyshakespeare"))
    assert len(text) == 1_115_394
    splits = split_text(text)
    assert list(splits) == ["train", "val", "test"]
    assert "".join(splits.values()) == text
    assert len(splits["train"]) == int(0.8 * len(text))
    nano = split_text(text, (0.9, 0.1, 0.0))
    assert list(nano) == ["train", "val"] and "".join(nano.values()) == text
    assert len(nano["train"]) == 1_003_854  # the characters nanoGPT's prepare.py trains on (it floors too)
    with pytest.raises(DataError, match="'train'"):
        split_text("abc", (0.1, 0.9))
    with pytest.raises(ValueError):
        split_text(text, (0.5, 0.2))


def test_sst2_counts_disjoint_deterministic(data_copy):
    data = data_copy("sst2")
    splits = load_sst2(data)
    assert {k: len(v) for k, v in splits.items()} == {"train": 58_548, "val": 872, "test": 872}
    rows, names = read_labelled_tsv(data / "sst2" / "train.tsv")
    assert names == ["0", "1"]
    # train and val come from train.tsv, disjoint; the test sentences are in neither
    remaining = Counter(rows)
    remaining.subtract(splits["train"] + splits["val"])
    assert min(remaining.values()) >= 0
    assert not {s for s, _ in splits["val"]} & {s for s, _ in splits["train"]}
    assert not {s for s, _ in splits["test"]} & {s for s, _ in rows}
    assert load_sst2(data, seed=0) == splits
    other = load_sst2(data, val_size=100, seed=1)
    assert len(other["val"]) == 100 and other["val"] != splits["val"][:100]
    assert {label for _, label in splits["train"]} == {0, 1}
    assert sorted(load_sst2(data, val_size=0)["train"]) == sorted(rows)


def test_sst2_validation_is_whole_sentences_never_trained_on(data_copy):
    """val holds sentences like dev's (long, contained in no other phrase), and training keeps none of their
    phrases but the shortest, and those only when another training phrase holds them too."""
    data = data_copy("sst2")
    splits = load_sst2(data)
    rows, _ = read_labelled_tsv(data / "sst2" / "train.tsv")
    padded_rows = "\n".join(f" {t} " for t, _ in rows)
    val = [t for t, _ in splits["val"]]
    assert min(len(t.split()) for t in val) >= 8
    assert statistics.median(len(t.split()) for t in val) >= 15  # dev.tsv's median is 19 words
    for text in val[:50]:  # maximal: in no row but its own
        assert padded_rows.count(f" {text} ") == sum(t == text for t, _ in rows)
    padded_val = "\n".join(f" {t} " for t in val)
    train_texts = {t for t, _ in splits["train"]}
    inside = {t for t in train_texts if f" {t} " in padded_val}
    assert inside and all(len(t.split()) <= 2 for t in inside)
    others = "\n".join(f" {t} " for t in train_texts - inside)
    assert all(f" {t} " in others for t in list(inside)[:200])
    # the positive share of val is close to dev's
    assert abs(sum(y for _, y in splits["val"]) / 872 - sum(y for _, y in splits["test"]) / 872) < 0.05


def test_sst2_split_ignores_row_order(data_copy):
    """GLUE's zip orders train.tsv's rows differently: accepted, and the splits come out identical."""
    data = data_copy("sst2")
    expected = load_sst2(data)
    path = data / "sst2" / "train.tsv"
    header, *rows = path.read_text().splitlines(keepends=True)
    random.Random(0).shuffle(rows)
    path.write_text(header + "".join(rows))
    assert load_sst2(data) == expected


def test_present_files_verified_once_per_process(data_copy, monkeypatch):
    data = data_copy("tinyshakespeare")
    checked = []
    real = corpora.downloads._mismatch
    monkeypatch.setattr(corpora.downloads, "_mismatch", lambda *args: checked.append(args[0]) or real(*args))
    for _ in range(3):
        fetch("tinyshakespeare", data)
    assert checked == [data / "tinyshakespeare" / "input.txt"]


def test_missing_file_in_unwritable_place(tmp_path):
    (tmp_path / "not_a_dir").write_text("")  # unwritable even for root, unlike a chmod'ed folder
    with pytest.raises(DataError, match=r"not_a_dir/tinyshakespeare: cannot download into this folder"):
        fetch("tinyshakespeare", tmp_path / "not_a_dir")


def test_present_file_with_wrong_checksum(data_copy):
    data = data_copy("tinyshakespeare")
    path = data / "tinyshakespeare" / "input.txt"
    path.write_bytes(path.read_bytes().replace(b"First Citizen", b"Second Citizen", 1))
    with pytest.raises(DataError, match=r"tinyshakespeare/input.txt: sha256 mismatch"):
        load_tinyshakespeare(data)


# ---------------------------------------------------------------------------------------------------------
# Readers: one test per kind of bad input; each error names the file and the line
# ---------------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.tsv: file not found"):
        read_labelled_tsv(tmp_path / "nope.tsv")


def test_parallel_files_differ_in_length(tmp_path):
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n")
    (tmp_path / "a.de").write_text("eins\nzwei\n")
    with pytest.raises(DataError) as err:
        read_parallel(tmp_path / "a.en", tmp_path / "a.de")
    assert f"{tmp_path / 'a.en'} has 3 lines" in str(err.value)
    assert f"{tmp_path / 'a.de'} has 2 lines" in str(err.value)


def test_empty_file(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    for read in (read_text, read_lines, read_labelled_tsv):
        with pytest.raises(DataError, match=r"empty\.txt: empty file"):
            read(tmp_path / "empty.txt")


def test_empty_split(tmp_path):
    (tmp_path / "header_only.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(DataError, match=r"header_only\.tsv: no examples"):
        read_labelled_tsv(tmp_path / "header_only.tsv")


def test_non_utf8_names_first_bad_line(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes("sentence\tlabel\ngood\t1\ncaf\u00e9\t0\nna\u00efve\t1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.tsv:3: not valid UTF-8 \(byte 0xe9\)"):
        read_labelled_tsv(path)
    gz = tmp_path / "latin1.en.gz"
    gz.write_bytes(gzip.compress(b"fine\nfine\nbad \xff\n"))
    with pytest.raises(DataError, match=r"latin1\.en\.gz:3: not valid UTF-8"):
        read_text(gz)


def test_tsv_missing_column(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("sentence\tlabel\ngood film\t1\nno label here\n")
    with pytest.raises(DataError) as err:
        read_labelled_tsv(path)
    assert str(err.value) == f"{path}:3: expected 2 tab-separated columns, got 1"


def test_tsv_column_name_not_in_header(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("text\ty\nfine\t1\n")
    with pytest.raises(DataError, match=r"x\.tsv:1: column 'sentence' not found; the header has columns"
                                        r" \['text', 'y'\]"):
        read_labelled_tsv(path)
    assert read_labelled_tsv(path, text_column="text", label_column="y") == ([("fine", 0)], ["1"])


def test_tsv_unknown_label(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("sentence\tlabel\nfine\tpos\nmeh\tneutral\n")
    with pytest.raises(DataError, match=r"dev\.tsv:3: unknown label 'neutral'"):
        read_labelled_tsv(path, labels=["neg", "pos"])


def test_empty_text(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("sentence\tlabel\nfine\t1\n  \t0\n")
    with pytest.raises(DataError, match=r"x\.tsv:3: empty text in column 'sentence'"):
        read_labelled_tsv(path)
    (tmp_path / "a.en").write_text("one\n\nthree\n")
    (tmp_path / "a.de").write_text("eins\nzwei\ndrei\n")
    with pytest.raises(DataError, match=r"a\.en:2: empty text"):
        read_parallel(tmp_path / "a.en", tmp_path / "a.de")


def test_too_long_sequence():
    seqs = [[1, 2], [1, 2, 3, 4, 5], [1], [1, 2, 3, 4]]
    with pytest.raises(DataError) as err:
        check_lengths(seqs, 3, "data/train.en", first_line=1)
    assert str(err.value).startswith("data/train.en:2: example 1 (0-based) has length 5 > max_len 3")
    assert check_lengths(seqs, 3, "x", policy="skip") == ([[1, 2], [1]], 2)
    assert check_lengths(seqs, 3, "x", policy="truncate") == ([[1, 2], [1, 2, 3], [1], [1, 2, 3]], 2)
    pairs = [([1], [1, 2, 3, 4]), ([1, 2], [1])]
    assert check_lengths(pairs, 3, "x", policy="skip") == ([([1, 2], [1])], 1)
    assert check_lengths(pairs, 3, "x", policy="truncate")[0][0] == ([1], [1, 2, 3])


def test_skip_bad_reports_count(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_bytes(b"sentence\tlabel\ngood\t1\nmissing\n\t0\nbad \xff\t1\nfine\t0\nodd\t7\n")
    with pytest.warns(DataWarning, match=r"x\.tsv: skipped 4 bad row\(s\); first at line 3"):
        examples, names = read_labelled_tsv(path, labels=["0", "1"], skip_bad=True)
    assert examples == [("good", 1), ("fine", 0)] and names == ["0", "1"]


def test_labels_strings_and_integers(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("label\tsentence\n10\ta\n2\tb\n-1\tc\n")
    examples, names = read_labelled_tsv(path)
    assert names == ["-1", "2", "10"] and examples == [("a", 2), ("b", 1), ("c", 0)]
    path.write_text("sentence\tlabel\na\tpos\nb\tneg\n")
    assert read_labelled_tsv(path) == ([("a", 1), ("b", 0)], ["neg", "pos"])


# ---------------------------------------------------------------------------------------------------------
# Downloads from a loopback HTTP server
# ---------------------------------------------------------------------------------------------------------


def _serve_copy(server, shared_data_dir, dataset, names):
    (server.root / dataset).mkdir(exist_ok=True)
    for name in names:
        (server.root / dataset / name).write_bytes((shared_data_dir / dataset / name).read_bytes())


def _serve_sst2_zip(server, shared_data_dir, train: bytes | None = None):
    (server.root / "sst2").mkdir(exist_ok=True)
    with zipfile.ZipFile(server.root / "sst2" / "SST-2.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("SST-2/train.tsv", train or (shared_data_dir / "sst2" / "train.tsv").read_bytes())
        archive.writestr("SST-2/dev.tsv", (shared_data_dir / "sst2" / "dev.tsv").read_bytes())
        archive.writestr("SST-2/test.tsv", b"index\tsentence\n0\tunused\n")


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_download_fresh_cache_then_offline(server, shared_data_dir, tmp_path):
    names = [f"{split}.{lang}.gz" for split in corpora.MULTI30K_SPLITS for lang in ("en", "de")]
    _serve_copy(server, shared_data_dir, "multi30k", names)
    _serve_copy(server, shared_data_dir, "tinyshakespeare", ["input.txt"])
    _serve_sst2_zip(server, shared_data_dir)
    cache = tmp_path / "cache"

    assert len(load_tinyshakespeare(cache)) == 1_115_394
    assert len(load_multi30k(cache, "en", "de")["train"]) == 29000  # fetches only the en/de files
    assert len(load_sst2(cache)["test"]) == 872
    expected = ["multi30k", *(f"multi30k/{n}" for n in names), "sst2", "sst2/dev.tsv", "sst2/train.tsv",
                "tinyshakespeare", "tinyshakespeare/input.txt"]
    assert _files(cache) == sorted(expected)  # no temp files, no zip left behind
    for dataset, sums in corpora.SHA256.items():
        for name, digest in sums.items():
            if (cache / dataset / name).exists():
                assert sha256(cache / dataset / name) == digest

    server.shutdown()  # a second fetch must not need the network
    server.server_close()
    corpora.downloads._VERIFIED.clear()
    for dataset in ("tinyshakespeare", "sst2"):
        assert fetch(dataset, cache) == cache / dataset
    assert len(load_multi30k(cache)["val"]) == 1014


def test_download_env_var_overrides_base_url(server, shared_data_dir, tmp_path, monkeypatch):
    _serve_copy(server, shared_data_dir, "tinyshakespeare", ["input.txt"])
    monkeypatch.setitem(corpora.BASE_URLS, "tinyshakespeare", "http://127.0.0.1:9/nowhere")
    monkeypatch.setenv("TZOO_DATA_URL_TINYSHAKESPEARE", f"http://127.0.0.1:{server.server_port}/tinyshakespeare")
    assert (fetch("tinyshakespeare", tmp_path) / "input.txt").is_file()


def test_corrupted_download_leaves_nothing(server, shared_data_dir, tmp_path):
    _serve_copy(server, shared_data_dir, "tinyshakespeare", ["input.txt"])
    served = server.root / "tinyshakespeare" / "input.txt"
    data = bytearray(served.read_bytes())
    data[1000] ^= 1
    served.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(DataError, match=r"input\.txt: download from http://127.0.0.1:\d+/tinyshakespeare/"
                                        r"input\.txt rejected, nothing saved: sha256 mismatch"):
        fetch("tinyshakespeare", cache)
    assert _files(cache) == []


def test_corrupted_sst2_zip_member_leaves_nothing(server, shared_data_dir, tmp_path):
    train = (shared_data_dir / "sst2" / "train.tsv").read_bytes().replace(b"\t1\n", b"\t0\n", 1)
    _serve_sst2_zip(server, shared_data_dir, train=train)
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(DataError, match=r"sst2/train\.tsv: download from .*SST-2\.zip:SST-2/train\.tsv rej"):
        fetch("sst2", cache)
    assert _files(cache) == []


def test_broken_zip_and_missing_url_leave_nothing(server, shared_data_dir, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(DataError, match=r"download failed: HTTP Error 404"):
        fetch("tinyshakespeare", cache)
    _serve_sst2_zip(server, shared_data_dir)
    zip_path = server.root / "sst2" / "SST-2.zip"
    zip_path.write_bytes(zip_path.read_bytes()[: -5000])  # truncated transfer
    with pytest.raises(DataError, match=r"SST-2\.zip"):
        fetch("sst2", cache)
    assert _files(cache) == []


def test_sst2_zip_with_reordered_rows_is_accepted(server, shared_data_dir, tmp_path, data_copy):
    header, *rows = (shared_data_dir / "sst2" / "train.tsv").read_bytes().splitlines(keepends=True)
    random.Random(1).shuffle(rows)
    _serve_sst2_zip(server, shared_data_dir, train=header + b"".join(rows))
    assert load_sst2(tmp_path / "cache") == load_sst2(data_copy("sst2"))


@pytest.mark.parametrize(("dataset", "name", "hint"), [
    ("sst2", "train.tsv", "--train-tsv"), ("tinyshakespeare", "input.txt", "--text"),
    ("multi30k", "train.en.gz", "--train-src"), ("imdb", "train.jsonl.gz", "--text FILE.jsonl")])
def test_own_file_in_a_canonical_folder_says_how_to_use_own_files(tmp_path, dataset, name, hint):
    """Issue #17: a 4-class TSV saved as sst2/train.tsv is refused, and the message says what to do instead."""
    (tmp_path / dataset).mkdir()
    (tmp_path / dataset / name).write_text("sentence\tlabel\na fine film\t3\na dull one\t0\n")
    with pytest.raises(DataError, match=rf"sha256 mismatch.*own files.*{hint}"):
        fetch(dataset, tmp_path, files=[name])
