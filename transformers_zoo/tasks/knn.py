"""kNN-LM and kNN-MT on a trained run (recipes/gpt.py knn, recipes/translate.py knn): build the datastore of the
training split's states into the run directory, tune lambda, T and k on validation, report test with and without
retrieval, the gain against datastore size and the decoding-time cost.

    result = run_knn(LMExperiment(task, max_eval_tokens=None), model, run_dir, KNNGrid())

writes ``knn_report.json``, ``knn_report.md`` and ``knn_gain.png`` into the run directory. The datastore
(``knn-datastore/``) is built once and reused while it matches the model's weights. Each fraction of the datastore
(its first 10%, 30%, 100% of the training data) is tuned on validation from neighbours searched once
(`NeighbourScores`); the test figures run through `KNNModel`, the same model generation uses.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..generation import greedy
from ..retrieval.datastore import Datastore, lm_states, translation_states, weights_fingerprint
from ..retrieval.index import IndexFolderError
from ..retrieval.knn import KNNModel, NeighbourScores
from ..runs import atomic_write_text, write_json

DATASTORE_DIR = "knn-datastore"
EXACT_UP_TO = 100_000  # states: a larger datastore gets an approximate (ivf) index by default


@dataclass(frozen=True)
class KNNGrid:
    """What is tuned on validation (every combination) and the datastore fractions reported."""

    lambdas: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    temperatures: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0)
    ks: tuple[int, ...] = (4, 8, 16, 32, 64)
    fractions: tuple[float, ...] = (0.1, 0.3, 1.0)

    def __post_init__(self) -> None:
        if not self.fractions or not all(0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions {self.fractions}: each must be in (0, 1]")
        if not all(0 <= lam <= 1 for lam in self.lambdas) or min(self.ks, default=0) < 1 or \
                min(self.temperatures, default=0) <= 0:
            raise ValueError("lambdas must be in [0, 1], ks >= 1, temperatures > 0")


class LMExperiment:
    """kNN-LM on an `LMTask`: states of every training position; loss and perplexity of validation and test
    (their first ``max_eval_tokens`` when given); the cost of greedy decoding ``decode_tokens`` tokens."""

    name, headline, lower_is_better = "kNN-LM", "loss", True

    def __init__(self, task, max_eval_tokens: int | None = None, decode_tokens: int = 200):
        self.task = dataclasses.replace(task, max_eval_tokens=max_eval_tokens or task.max_eval_tokens)
        self.decode_tokens = decode_tokens
        self.test_splits = ("test",) if "test" in task.data.tokens else ()
        if not self.test_splits:
            raise ValueError("the run has no test split (its --split has a 0 test fraction): kNN-LM reports test "
                             "loss; train with e.g. --split 0.8,0.1,0.1")

    def states(self, model: nn.Module, split: str, with_logprobs: bool = False):
        tokens = self.task.data.tokens[split]
        if split != "train" and self.task.max_eval_tokens:
            tokens = tokens[: self.task.max_eval_tokens]
        return lm_states(model, tokens, self.task.block_size, self.task.eval_batch_size, with_logprobs)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, Any]:
        return self.task.evaluate(model, split)

    def decode_seconds_per_token(self, model: nn.Module) -> float:
        """Wall time per token of greedy decoding (one row, KV cache) within the model's positions."""
        n_prompt = 8
        tokens = self.task.data.tokens["test"].to(next(model.parameters()).device)
        n_new = min(self.task.block_size, model.config.max_len) - n_prompt
        start, done = time.perf_counter(), 0
        while done < self.decode_tokens:
            prompt = tokens[None, done: done + n_prompt]
            done += greedy(model, model.init_cache(1), prompt, n_new).shape[1]
        return (time.perf_counter() - start) / done


class MTExperiment:
    """kNN-MT on a `TranslationTask`: teacher-forced decoder states of every target token of the training pairs;
    test splits scored with beam search (sacreBLEU, chrF) and teacher-forced loss; the decoding cost is the
    wall time per generated token of translating a test split."""

    name, headline, lower_is_better = "kNN-MT", "bleu", False

    def __init__(self, task, test_splits: tuple[str, ...] | None = None):
        from .translation import report

        self.task, self.report = task, report
        self.test_splits = test_splits or task.eval_splits[1:]
        self.collate = task.format.collator(task.tokenizer)

    def states(self, model: nn.Module, split: str, with_logprobs: bool = False):
        return translation_states(model, self.task.data.examples[split], self.collate,
                                  self.task.settings.eval_max_tokens, with_logprobs)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, Any]:
        start = time.perf_counter()
        hyps = self.task.translate(model, split, self.task.search.beam)
        seconds = time.perf_counter() - start
        n_tokens = sum(len(self.task.tokenizer.encode(h)) + 1 for h in hyps)
        scores = self.report.score(hyps, [t for _, t in self.task.data.pairs[split]])
        loss = self.task.split_loss(model, split)["loss"]
        return {"bleu": scores["bleu"], "chrf": scores["chrf"], "signature": scores["signature"], "loss": loss,
                "decode_s": seconds, "decode_ms_per_token": 1000 * seconds / max(n_tokens, 1)}

    def decode_seconds_per_token(self, model: nn.Module) -> float | None:
        return None  # measured by evaluate on the test splits


def open_datastore(experiment, model: nn.Module, run_dir: Path, given: str | Path | None = None,
                   kind: str = "auto", nprobe: int = 16, log=print) -> tuple[Datastore, dict[str, Any]]:
    """The datastore ``given`` (checked against the model: one line if another run's, another dimension, or
    empty), else the run's own ``knn-datastore/`` when it matches the model's weights and ``kind``, else built and
    saved there (atomically). ``kind``: flat, ivf, hnsw, or auto (exact below EXACT_UP_TO states, else ivf).
    Returns it and how it was had."""
    if given is not None:
        return Datastore.load(given, model), {"path": str(given), "built": False}
    folder = run_dir / DATASTORE_DIR
    if (folder / "index.json").is_file():
        try:
            store = Datastore.load(folder, model)
            if kind in ("auto", store.index.meta["kind"]):
                return store, {"path": str(folder), "built": False}
        except IndexFolderError as err:
            log(f"rebuilding the datastore: {err}")
    start = time.perf_counter()
    keys, values = experiment.states(model, "train")
    if kind == "auto":
        kind = "flat" if len(keys) <= EXACT_UP_TO else "ivf"
    store = Datastore.build(keys, values, weights_fingerprint(model), kind=kind, nprobe=nprobe)
    store.save(folder)
    return store, {"path": str(folder), "built": True, "build_s": time.perf_counter() - start}


def run_knn(experiment, model: nn.Module, run_dir: Path, grid: KNNGrid, datastore: str | Path | None = None,
            command: str = "", log=print, kind: str = "auto", nprobe: int = 16) -> dict[str, Any]:
    """The whole experiment (see the module's docstring); returns knn_report.json's dict."""
    run_dir = Path(run_dir)
    model.eval()
    store, info = open_datastore(experiment, model, run_dir, datastore, kind, nprobe, log)
    log(f"datastore: {len(store):,} states of dimension {store.dim} ({'built' if info['built'] else 'reused'}: "
        f"{info['path']})")
    val_keys, val_values, val_logprobs = experiment.states(model, "val", with_logprobs=True)
    base = {split: experiment.evaluate(model, split) for split in experiment.test_splits}
    base_cost = experiment.decode_seconds_per_token(model)
    rows = []
    for fraction in sorted(grid.fractions):
        part = store if fraction == 1.0 else store.prefix(math.ceil(fraction * len(store)))
        k_max = min(max(grid.ks), len(part))
        tuned = NeighbourScores.search(part, val_keys, val_values, val_logprobs, k_max).tune(
            grid.lambdas, grid.temperatures, [k for k in grid.ks if k <= k_max] or [k_max])
        knn = KNNModel(model, part, tuned["lam"], tuned["temperature"], tuned["k"])
        splits = experiment.test_splits if fraction == 1.0 else experiment.test_splits[:1]
        test = {split: experiment.evaluate(knn, split) for split in splits}
        row = {"fraction": fraction, "entries": len(part), "lam": tuned["lam"], "temperature": tuned["temperature"],
               "k": tuned["k"], "val_loss": tuned["loss"], "val_base_loss": tuned["base_loss"], "test": test,
               "decode_s_per_token": experiment.decode_seconds_per_token(knn)}
        rows.append(row)
        first = splits[0]
        log(f"{fraction:.0%} ({len(part):,} states): lambda {tuned['lam']}, T {tuned['temperature']}, k {tuned['k']}; "
            f"val loss {tuned['base_loss']:.4f} -> {tuned['loss']:.4f}; {first} {experiment.headline} "
            f"{base[first][experiment.headline]:.4f} -> {test[first][experiment.headline]:.4f}")
    full = rows[-1]
    result = {"method": experiment.name, "run_dir": str(run_dir), "command": command,
              "datastore": {**info, "entries": len(store), "dim": store.dim, "kind": store.index.meta["kind"],
                            "fingerprint": store.fingerprint},
              "grid": dataclasses.asdict(grid),
              "tuned": {k: full[k] for k in ("lam", "temperature", "k", "val_loss", "val_base_loss")},
              "test": {split: {"without": base[split], "with": full["test"][split],
                               **_change(base[split], full["test"][split], experiment.headline)}
                       for split in experiment.test_splits},
              "fractions": rows, "decode_s_per_token": {"without": base_cost, "with": full["decode_s_per_token"]}}
    result["slowdown"] = _slowdown(experiment, result, base)
    write_json(run_dir / "knn_report.json", result)
    _plot(experiment, base, rows, base_cost, run_dir / "knn_gain.png")
    atomic_write_text(run_dir / "knn_report.md", _markdown(experiment, result))
    return result


def _change(before: dict[str, Any], after: dict[str, Any], headline: str) -> dict[str, float]:
    out = {"delta": after[headline] - before[headline]}
    if headline == "loss":
        out["relative"] = out["delta"] / before["loss"]
        out["ppl_without"], out["ppl_with"] = math.exp(before["loss"]), math.exp(after["loss"])
    return out


def _slowdown(experiment, result: dict[str, Any], base: dict[str, dict[str, Any]]) -> float | None:
    cost = result["decode_s_per_token"]
    if cost["without"]:
        return cost["with"] / cost["without"]
    split = experiment.test_splits[0]  # MT: the wall time of translating the first test split
    return result["test"][split]["with"]["decode_s"] / base[split]["decode_s"]


def _gain(experiment, before: float, after: float) -> float:
    return (before - after) if experiment.lower_is_better else (after - before)


def _plot(experiment, base: dict[str, dict[str, Any]], rows: list[dict[str, Any]], base_cost: float | None,
          path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split, metric = experiment.test_splits[0], experiment.headline
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    entries = [r["entries"] for r in rows]
    left.plot(entries, [_gain(experiment, base[split][metric], r["test"][split][metric]) for r in rows], "o-")
    left.set_xscale("log")
    left.set_xlabel("datastore entries (10%, 30%, 100% of the training data)")
    left.set_ylabel(f"{split} {metric} {'reduction' if experiment.lower_is_better else 'gain'}")
    left.axhline(0, color="grey", lw=0.5)
    cost = [_cost_ms(r["test"][split], r["decode_s_per_token"]) for r in rows]
    right.plot(entries, cost, "o-", label=f"with {experiment.name}")
    right.axhline(_cost_ms(base[split], base_cost), color="grey", ls="--", label="without")
    right.set_xscale("log")
    right.set_xlabel("datastore entries")
    right.set_ylabel("decoding ms per token")
    right.legend()
    fig.suptitle(f"{experiment.name}: gain and decoding cost against datastore size")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cost_ms(metrics: dict[str, Any], seconds_per_token: float | None) -> float:
    if seconds_per_token is not None:
        return 1000 * seconds_per_token
    return metrics["decode_ms_per_token"]


def _markdown(experiment, r: dict[str, Any]) -> str:
    metric = experiment.headline
    t = r["tuned"]
    lines = [f"# {experiment.name} report", "", f"Command: `{r['command']}`", "",
             f"Datastore: {r['datastore']['entries']:,} states of dimension {r['datastore']['dim']} "
             f"({r['datastore']['kind']} L2 index, `{r['datastore']['path']}`).", "",
             f"Tuned on validation (loss): lambda {t['lam']}, T {t['temperature']}, k {t['k']}; validation loss "
             f"{t['val_base_loss']:.4f} -> {t['val_loss']:.4f}.", "",
             "| split | without | with | change |", "| --- | --- | --- | --- |"]
    for split, m in r["test"].items():
        before, after = m["without"], m["with"]
        change = f"{m['relative']:+.2%}" if "relative" in m else f"{m['delta']:+.2f}"
        extra = (f" (ppl {m['ppl_without']:.3f} -> {m['ppl_with']:.3f})" if "ppl_with" in m else
                 f" (chrF {before['chrf']:.2f} -> {after['chrf']:.2f})")
        lines.append(f"| {split} | {before[metric]:.4f} | {after[metric]:.4f} | {change}{extra} |")
    lines += ["", f"Decoding slowdown with retrieval: {r['slowdown']:.2f}x.", "",
              "| datastore | entries | lambda | T | k | val loss | test " + metric + " |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    split = experiment.test_splits[0]
    for row in r["fractions"]:
        lines.append(f"| {row['fraction']:.0%} | {row['entries']:,} | {row['lam']} | {row['temperature']} | "
                     f"{row['k']} | {row['val_loss']:.4f} | {row['test'][split][metric]:.4f} |")
    lines += ["", "![knn_gain](knn_gain.png)", ""]
    return "\n".join(lines)


__all__ = ["DATASTORE_DIR", "KNNGrid", "LMExperiment", "MTExperiment", "open_datastore", "run_knn"]
