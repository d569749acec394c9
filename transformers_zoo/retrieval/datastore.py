"""Datastores for kNN-LM and kNN-MT (Khandelwal et al. 2020, 2021): a model's final hidden states (what its output
projection reads), each keyed to the token that came next, in a `VectorIndex` of squared L2 distances.

    keys, values = lm_states(model, train_tokens, block_size=64)          # a gpt.py run: every training position
    keys, values = translation_states(model, examples, collator)          # a translate.py run: teacher-forced
    store = Datastore.build(keys, values, weights_fingerprint(model))
    store.save(run_dir / "knn-datastore")                                 # atomic (VectorIndex.save)
    store = Datastore.load(run_dir / "knn-datastore", model)              # another model's weights: refused
    distances, tokens = store.search(h, k=16)                             # (Q, k) each, nearest first

The fingerprint is a hash of the model's weights: states of other weights (another run, another checkpoint of the
same run) would be neighbours in a different space.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from ..batching import IGNORE_INDEX, LMBlocks, LMCollator
from ..corpora import PathLike
from .index import IndexFolderError, VectorIndex

__all__ = ["Datastore", "lm_states", "translation_states", "weights_fingerprint"]


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's parameter and buffer names, shapes and values: the same only for the same weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class Datastore:
    """Keys (hidden states, float32) and values (next-token ids) in an L2 `VectorIndex` of integer values."""

    def __init__(self, index: VectorIndex):
        if index.meta.get("metric") != "l2" or index.values is None:
            raise IndexFolderError("not a kNN datastore (an index of documents, or of inner products)")
        self.index = index

    @classmethod
    def build(cls, keys: np.ndarray, values: np.ndarray, fingerprint: str, kind: str = "flat",
              nprobe: int = 16) -> Datastore:
        """A datastore of ``keys (N, D)`` -> ``values (N,)`` for the model of ``fingerprint``: ``flat`` (exact),
        ``ivf`` (about sqrt(N) cells, ``nprobe`` scanned a query) or ``hnsw``."""
        keys = np.ascontiguousarray(keys, dtype=np.float32)
        if keys.ndim != 2 or not len(keys):
            raise IndexFolderError(f"no states to store (keys of shape {tuple(keys.shape)}): the data is empty")
        nlist = max(1, min(int(len(keys) ** 0.5), len(keys) // 39))  # FAISS wants >= 39 training points a cell
        index = VectorIndex.create(keys.shape[1], fingerprint, kind=kind, metric="l2", values=True, nlist=nlist,
                                   nprobe=nprobe)
        index.add_values(values, keys)
        return cls(index)

    @property
    def dim(self) -> int:
        return self.index.dim

    @property
    def fingerprint(self) -> str:
        return self.index.meta["fingerprint"]

    def __len__(self) -> int:
        return len(self.index)

    def prefix(self, n: int) -> Datastore:
        """The first ``n`` entries as a new datastore of the same kind: the same data cut to a fraction of its size."""
        n = max(1, min(n, len(self)))
        meta, faiss_index = self.index.meta, self.index.faiss_index
        if meta["kind"] == "ivf":
            faiss_index.make_direct_map()
        return Datastore.build(faiss_index.reconstruct_n(0, n), self.index.values[:n], self.fingerprint,
                               meta["kind"], meta.get("nprobe", 16))

    def check(self, model: nn.Module, where: PathLike | None = None) -> None:
        """Refuse (one line) an empty datastore, one of another dimension or of another model's weights."""
        if not len(self):
            raise IndexFolderError("the datastore is empty: build it from a non-empty training split", where)
        d_model = model.config.d_model
        if self.dim != d_model:
            raise IndexFolderError(f"dimension mismatch: the datastore holds states of dimension {self.dim}, the "
                                   f"model's are {d_model}", where)
        mine = weights_fingerprint(model)
        if mine != self.fingerprint:
            raise IndexFolderError(f"built from other weights (fingerprint {self.fingerprint[:12]}, this model's is "
                                   f"{mine[:12]}): another run's or another checkpoint's datastore; build this one's",
                                   where)

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(distances, tokens)``, each ``(Q, k')`` with ``k' = min(k, len)``, nearest first, on the queries'
        device: squared L2 distances (float32) and the next-token ids (long; -1 with distance +inf where the index
        found fewer)."""
        q = queries.detach().reshape(-1, queries.shape[-1]).float().cpu().numpy()
        positions, distances = self.index.search_indices(q, k)
        missing = positions < 0
        tokens = np.where(missing, -1, self.index.values[np.where(missing, 0, positions)])
        distances = np.where(missing, np.inf, distances)
        device = queries.device
        return torch.from_numpy(distances).to(device), torch.from_numpy(tokens).to(device)

    def save(self, folder: PathLike):
        return self.index.save(folder)

    @classmethod
    def load(cls, folder: PathLike, model: nn.Module | None = None) -> Datastore:
        """The datastore in ``folder``, checked against ``model`` when given (see `check`)."""
        store = cls(VectorIndex.load(folder))
        if model is not None:
            store.check(model, folder)
        return store


def _stack(keys: list[torch.Tensor], values: list[torch.Tensor], extra: list[torch.Tensor]):
    out = [torch.cat(keys).numpy(), torch.cat(values).numpy()]
    return (*out, torch.cat(extra).numpy()) if extra else tuple(out)


@torch.no_grad()
def _collect(model: nn.Module, batches: Iterable[tuple[tuple[torch.Tensor, ...], torch.Tensor]],
             with_logprobs: bool):
    """Hidden states at every scored position of ``(inputs, labels)`` batches (inputs as the model's `hidden`
    takes them), their labels and, ``with_logprobs``, the model's log-probability of each label."""
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    keys, values, logprobs = [], [], []
    for inputs, labels in batches:
        h = model.hidden(*(x.to(device) if x is not None else None for x in inputs))  # (B, T, D)
        labels = labels.to(device)
        scored = labels != IGNORE_INDEX
        h, y = h[scored], labels[scored]  # (N, D), (N,)
        keys.append(h.float().cpu())
        values.append(y.cpu())
        if with_logprobs:
            lp = torch.log_softmax(model.project(h).float(), dim=-1)
            logprobs.append(lp.gather(1, y[:, None]).squeeze(1).cpu())
    model.train(was_training)
    return _stack(keys, values, logprobs)


def lm_states(model: nn.Module, tokens: torch.Tensor, block_size: int, batch_size: int = 64,
              with_logprobs: bool = False):
    """``(keys (N, D), values (N,))`` of a decoder-only model over ``tokens`` (1-D) cut into non-overlapping
    blocks as `tasks.lm.evaluate_lm` scores them: the state at each position and the token after it; with
    ``with_logprobs`` also the model's log-probability of that token ``(N,)``."""
    blocks, collate = LMBlocks(tokens, block_size), LMCollator(model.config.pad_id)

    def batches():
        for starts in blocks.eval_batches(batch_size):
            batch = collate([blocks[s] for s in starts])
            labels = batch["labels"]
            mask = (labels != IGNORE_INDEX) if (labels == IGNORE_INDEX).any() else None
            yield (batch["input_ids"], mask), labels

    return _collect(model, batches(), with_logprobs)


def translation_states(model: nn.Module, examples, collate, max_tokens: int = 6000, with_logprobs: bool = False):
    """``(keys (N, D), values (N,))`` of an encoder-decoder over ``examples`` (``(src ids, tgt ids)`` pairs),
    teacher-forced: the decoder's state at every target position and the target token it predicts (EOS
    included); with ``with_logprobs`` also the model's log-probability of that token ``(N,)``."""
    def batches():  # in the order given (a prefix of the datastore is a prefix of the pairs)
        start = 0
        while start < len(examples):
            end, width = start, 0
            while end < len(examples):
                width = max(width, len(examples[end][0]), len(examples[end][1]) + 1)
                if end > start and (end + 1 - start) * width > max_tokens:
                    break
                end += 1
            batch = collate(examples[start:end])
            start = end
            yield (batch["src"], batch["tgt_in"]), batch["tgt_out"]

    return _collect(model, batches(), with_logprobs)
