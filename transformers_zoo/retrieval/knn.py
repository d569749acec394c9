"""kNN-LM / kNN-MT as a model: next-token distribution = lambda * p_kNN + (1 - lambda) * p_model.

    knn = KNNModel(model, Datastore.load(run_dir / "knn-datastore", model), lam=0.25, temperature=10.0, k=16)
    greedy(knn, knn.init_cache(src), bos, ...); beam_search(...); generate_many(knn, ...)   # unchanged
    logprobs = knn(input_ids)            # (B, T, V): evaluation (loss, ppl) reads it as logits

p_kNN of a state h: its k nearest datastore states, weighted softmax(-d / T) over their squared L2 distances d,
summed per next token (Khandelwal et al. 2020). The wrapper returns log-probabilities where the model returns
logits (their log-softmax is themselves), mixed in log space (logaddexp) so neither side underflows: with
lambda = 0 they are exactly the model's log-softmax.

`NeighbourScores` is the same mixture for the observed tokens only, over neighbours searched once: lambda, T and k
are tuned on a validation split from it without searching again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .datastore import Datastore

__all__ = ["KNNModel", "NeighbourScores", "mix_logprobs"]


def mix_logprobs(knn_logprobs: torch.Tensor, model_logprobs: torch.Tensor, lam: float) -> torch.Tensor:
    """log(lam * p_kNN + (1 - lam) * p_model), elementwise, from the two log-probabilities."""
    log_lam = math.log(lam) if lam > 0 else float("-inf")
    log_rest = math.log1p(-lam) if lam < 1 else float("-inf")
    return torch.logaddexp(knn_logprobs + log_lam, model_logprobs + log_rest)


class KNNModel(nn.Module):
    """A decoder-only or encoder-decoder ``model`` with a ``datastore`` of its own states: the generation
    interface (`init_cache`, `decode_step`) and ``forward`` (the model's inputs) give mixed log-probabilities."""

    def __init__(self, model: nn.Module, datastore: Datastore, lam: float = 0.25, temperature: float = 10.0,
                 k: int = 16):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lambda={lam} must be in [0, 1]")
        if temperature <= 0 or k < 1:
            raise ValueError(f"temperature={temperature} must be > 0 and k={k} >= 1")
        datastore.check(model)
        self.model, self.datastore = model, datastore
        self.lam, self.temperature, self.k = lam, temperature, k
        self.config = model.config

    def knn_logprobs(self, h: torch.Tensor) -> torch.Tensor:
        """log p_kNN `(..., V)` of hidden states `h (..., D)` (-inf for tokens no neighbour holds)."""
        distances, tokens = self.datastore.search(h, self.k)  # (N, k)
        weights = torch.softmax(-distances / self.temperature, dim=-1)
        p = torch.zeros(tokens.shape[0], self.config.vocab_size, device=h.device)
        p.scatter_add_(1, tokens.clamp(min=0), weights)  # missing neighbours weigh 0
        return p.log().view(*h.shape[:-1], -1)

    def mixed(self, h: torch.Tensor) -> torch.Tensor:
        """The mixed log-probabilities `(..., V)` of hidden states `h (..., D)`."""
        model_logprobs = torch.log_softmax(self.model.project(h).float(), dim=-1)
        return mix_logprobs(self.knn_logprobs(h), model_logprobs, self.lam)

    def forward(self, *inputs: torch.Tensor | None) -> torch.Tensor:
        """The wrapped model's inputs (`input_ids, mask` or `src, tgt_in, ...`) -> log-probabilities `(B, T, V)`."""
        return self.mixed(self.model.hidden(*inputs))

    def init_cache(self, *args, **kwargs):
        return self.model.init_cache(*args, **kwargs)

    def decode_step(self, tokens: torch.Tensor, cache, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Append `tokens (B, t)` to `cache`; next-token log-probabilities `(B, V)` (logits to generation)."""
        return self.mixed(self.model.step_hidden(tokens, cache, attention_mask))


@dataclass
class NeighbourScores:
    """The observed next tokens of a split with their `k_max` nearest datastore neighbours, searched once:
    ``model_logprobs (N,)`` the model's log-probability of each observed token, ``distances (N, k_max)`` and
    ``hits (N, k_max)`` (the neighbour's token is the observed one)."""

    model_logprobs: torch.Tensor
    distances: torch.Tensor
    hits: torch.Tensor

    @classmethod
    def search(cls, datastore: Datastore, keys, values, model_logprobs, k_max: int,
               chunk: int = 8192) -> NeighbourScores:
        """Search the neighbours of ``keys (N, D)`` (numpy or torch) whose observed tokens are ``values (N,)``."""
        keys, values = torch.as_tensor(keys), torch.as_tensor(values)
        found = [datastore.search(keys[i:i + chunk], k_max) for i in range(0, len(keys), chunk)]
        distances = torch.cat([d for d, _ in found])
        tokens = torch.cat([t for _, t in found])
        return cls(torch.as_tensor(model_logprobs).float(), distances, tokens == values[:, None])

    def loss(self, lam: float, temperature: float, k: int) -> float:
        """Mean negative log-likelihood (nats/token) of the observed tokens under the mixture."""
        log_w = torch.log_softmax(-self.distances[:, :k] / temperature, dim=-1)
        knn = torch.logsumexp(log_w.masked_fill(~self.hits[:, :k], float("-inf")), dim=-1)
        return float(-mix_logprobs(knn, self.model_logprobs, lam).mean())

    def tune(self, lambdas, temperatures, ks) -> dict[str, float]:
        """The ``lam``, ``temperature`` and ``k`` of the lowest loss on this split (and ``loss``, and the
        model's own ``base_loss``)."""
        best = {"loss": float("inf")}
        for k in ks:
            for t in temperatures:
                for lam in lambdas:
                    loss = self.loss(lam, t, k)
                    if loss < best["loss"]:
                        best = {"lam": lam, "temperature": t, "k": k, "loss": loss}
        return {**best, "base_loss": float(-self.model_logprobs.mean())}
