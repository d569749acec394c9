"""Sentence embeddings and vector search against their peers, in one process.

    python benchmarks/embed.py [--quick] [--threads N] [--rounds N] [--n 100000] [--dim 256] [--out PATH]

1. Encoding: sentences/s of `SentenceEncoder.encode` (our EncoderOnly.embed, the checkpoint's fast tokenizer)
   against `SentenceTransformer.encode` on one checkpoint of all-MiniLM-L6-v2's shape (BERT, d 384, 6 layers,
   12 heads, FFN 1536, mean pooling, Normalize; random weights, a WordPiece vocabulary of the captions' words),
   made by sentence-transformers and converted by interop.sentence_transformers; the same texts (Multi30k
   task 2 test captions when the data is there, else generated sentences), batch 32, both interleaved
   (benchmarks/measure.py), median of the rounds; the vectors must agree to 1e-5. A third row runs ours with
   every padding position through every layer (`stack.unpad = False`), to show what unpadding gives.
2. Search: recall@10 and queries/s of HNSW (retrieval.VectorIndex "hnsw", M 32, efConstruction 200, several
   efSearch) against exact inner-product search ("flat"), on N clustered random unit vectors (1,000 Gaussian
   clusters; queries drawn like the corpus), 1,000 queries, one FAISS thread.
The tables go to stdout and `benchmarks/results/embed-<date>.md`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.measure import interleave  # noqa: E402
from benchmarks.run import machine_description  # noqa: E402
from transformers_zoo.interop.sentence_transformers import load_sentence_transformer  # noqa: E402
from transformers_zoo.retrieval.index import VectorIndex  # noqa: E402

MINILM = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
              max_position_embeddings=512)


def texts_to_embed(n: int) -> list[str]:
    try:
        from transformers_zoo.corpora import load_multi30k_captions

        images = load_multi30k_captions(None, "en", ("test_2016",))["test_2016"]
        return [c for caps in images for c in caps][:n]
    except Exception:  # no data here: sentences of the same length spread
        rng = np.random.default_rng(0)
        words = "a man woman dog child runs sits in on the red blue street park water ball with two".split()
        return [" ".join(rng.choice(words, size=rng.integers(4, 30))) for _ in range(n)]


def minilm_checkpoint(folder: Path, texts: list[str]) -> Path:
    """A random all-MiniLM-L6-v2-shaped sentence-transformers folder, saved by sentence-transformers itself."""
    import transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules

    words = sorted({w.lower().strip(".,!?\"'") for t in texts for w in t.split()} - {""})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-",
             *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"), *words]
    vocab = list(dict.fromkeys(vocab))
    bert = folder / "bert"
    bert.mkdir(parents=True)
    (bert / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(str(bert / "vocab.txt")).save_pretrained(bert)
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(vocab_size=len(vocab), **MINILM)).save_pretrained(bert)
    st = SentenceTransformer(modules=[modules.Transformer(str(bert), max_seq_length=256),
                                      modules.Pooling(384, "mean"), modules.Normalize()], device="cpu")
    st.save(str(folder / "st"))
    return folder / "st"


def padding_share(encoder, texts: list[str], batch_size: int) -> float:
    """The share of padding positions in `encoder.encode`'s batches (sorted by length, longest first)."""
    from transformers_zoo.retrieval.encode import frame_ids

    lengths = sorted((len(r) for r in frame_ids(encoder.tokenizer, texts, encoder.max_tokens)), reverse=True)
    batches = [lengths[i:i + batch_size] for i in range(0, len(lengths), batch_size)]
    return 1 - sum(lengths) / sum(b[0] * len(b) for b in batches)


def encoding_table(rounds: int, n_texts: int) -> str:
    from sentence_transformers import SentenceTransformer

    texts = texts_to_embed(n_texts)
    with tempfile.TemporaryDirectory() as tmp:
        folder = minilm_checkpoint(Path(tmp), texts)
        peer = SentenceTransformer(str(folder), device="cpu").eval()
        ours = load_sentence_transformer(folder)
        ours.model.eval()
    ours_vectors = ours.encode(texts, batch_size=32)
    peer_vectors = peer.encode(texts, batch_size=32, convert_to_numpy=True)
    max_diff = float(np.abs(ours_vectors - peer_vectors).max())
    padding = padding_share(ours, texts, 32)

    def padded() -> None:  # ours with every position through every layer (modules.unpad), to show what it gives
        ours.model.stack.unpad = False
        try:
            ours.encode(texts, batch_size=32)
        finally:
            ours.model.stack.unpad = True

    timings = interleave({"ours": lambda: ours.encode(texts, batch_size=32), "ours, padded": padded,
                          "sentence-transformers": lambda: peer.encode(texts, batch_size=32)},
                         torch.device("cpu"), warmup=1, rounds=rounds)
    lines = [f"Encoding {len(texts)} texts (batch 32, {padding:.0%} of the positions padding), MiniLM-L6 shape, "
             f"random weights; median of {rounds} rounds, interleaved; max |difference| of the vectors "
             f"{max_diff:.2e}", "",
             "| encoder | sentences/s | ours / this (median of per-round ratios) |", "|---|---:|---:|"]
    for name in ("ours", "ours, padded", "sentence-transformers"):
        lines.append(f"| {name} | {timings.rate(name, len(texts)):.1f} | "
                     f"{timings.ratio('ours', name) if name != 'ours' else 1.0:.2f} |")
    assert max_diff < 1e-5, f"the vectors differ by {max_diff}"
    return "\n".join(lines)


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(12345).standard_normal((clusters, dim)).astype(np.float32)
    x = centers[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def search_table(n: int, dim: int, n_queries: int, ef_values: list[int]) -> str:
    import faiss

    faiss.omp_set_num_threads(1)
    corpus, queries = clustered(n, dim, 1000, 0), clustered(n_queries, dim, 1000, 1)
    ids = [str(i) for i in range(n)]
    flat = VectorIndex.create(dim, "bench", "flat")
    flat.add(ids, ids, corpus)
    start = time.perf_counter()
    exact, _ = flat.search_indices(queries, 10)
    exact_s = time.perf_counter() - start
    hnsw = VectorIndex.create(dim, "bench", "hnsw")
    build_threads = os.cpu_count() or 1  # the build on every core (minutes for millions); searches on one
    faiss.omp_set_num_threads(build_threads)
    start = time.perf_counter()
    hnsw.add(ids, ids, corpus)
    build_s = time.perf_counter() - start
    faiss.omp_set_num_threads(1)
    lines = [f"Search: {n:,} clustered unit vectors x {dim} (float32, {corpus.nbytes / 1e9:.2f} GB), {n_queries:,} "
             f"queries, top 10, 1 thread; HNSW M 32, efConstruction 200, built in {build_s:.0f}s on {build_threads} "
             "threads", "",
             "| index | efSearch | recall@10 | queries/s | speed-up |", "|---|---:|---:|---:|---:|",
             f"| exact (flat) | - | 1.000 | {n_queries / exact_s:.0f} | 1.0 |"]
    for ef in ef_values:
        hnsw.faiss_index.hnsw.efSearch = ef
        start = time.perf_counter()
        approx, _ = hnsw.search_indices(queries, 10)
        seconds = time.perf_counter() - start
        recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
        lines.append(f"| HNSW | {ef} | {recall:.3f} | {n_queries / seconds:.0f} | {exact_s / seconds:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test: 64 texts, 2 rounds, 5,000 vectors")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--n", type=int, default=100_000, help="vectors in the search benchmark")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--ef", default="16,32,64,128", help="efSearch values of HNSW")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--skip-encoding", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.rounds, args.texts, args.n, args.queries = 2, 64, 5000, 200
    parts = [f"# Embedding and search benchmark, {datetime.date.today()}", "",
             machine_description(torch.device("cpu")), ""]
    if not args.skip_encoding:
        parts += [encoding_table(args.rounds, args.texts), ""]
    if not args.skip_search:
        parts += [search_table(args.n, args.dim, args.queries, [int(e) for e in args.ef.split(",")]), ""]
    text = "\n".join(parts)
    print(text)
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"embed-{datetime.date.today()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
