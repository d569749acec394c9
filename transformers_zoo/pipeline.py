"""The one recipe pipeline: every recipe trains, resumes, evaluates and reports the same way.

A recipe is a module with presets, flags and two functions (see DESIGN.md, "Recipe contract"):

    NAME, FAMILY, DEFAULT_PRESET = "gpt", "decoder_only", "cpu"
    PRESETS = {"tiny": {"model": {...}, "train": {...}, "data": {...}}, ...}
    SETTINGS = LMSettings                       # the frozen settings tree (tasks/lm.py)
    def settings(args) -> LMSettings            # presets + flags (cli/ turns them into fields)
    def prepare(settings, ctx) -> (task, model) # data, tokenizer, model: every bad input fails here

and this module does the rest, never seeing a flag:

    report = train(recipe, settings, Context(run_dir, data_dir=...))   # new, or resumed (ctx.resumed)
    evals = evaluate_only(recipe, checkpoint, data_dir, device, out)    # --eval-only
    settings, task, model = load_run(recipe, checkpoint, data_dir, device)  # subcommands (sample, predict)

A run directory holds `config.json` (`{"recipe": NAME, **settings.to_dict(), ...}`: enough to rebuild the
run), what the task saves (its tokenizer), `checkpoints/`, `metrics.jsonl`, `report.json`, `report.md` and
the plots. The task is a `tasks.base.TaskBase`: besides data, loss and `evaluate`, it may choose the final
weights (best, or averaged checkpoints), add report sections and keys, and act at each evaluation.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .runs import read_run_config, run_dir_of, write_json
from .settings import Settings
from .training import load_checkpoint, plot_curves, write_report
from .training.distributed import broadcast_object, init_distributed, is_main
from .training.trainer import resolve_device


@dataclass(frozen=True)
class Context:
    """Where a run lives and what it starts from: its directory, whether it continues a run (its tokenizer and
    weights are then the run's own), where the data sets lie on this machine (not part of the settings)."""

    run_dir: Path
    resumed: bool = False
    data_dir: str | None = None
    for_eval: bool = False  # a trained run loaded to be evaluated or used: prepare may skip what training needs

    @property
    def has_checkpoint(self) -> bool:
        from .training import latest_checkpoint

        return self.resumed and latest_checkpoint(self.run_dir) is not None


def recipe_from_file(path: str | Path) -> ModuleType:
    """A recipe file (recipes/gpt.py) as a module, for code that runs recipes it does not import (compare.py's
    cells, tests)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{Path(path).stem}_recipe", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: the module can find itself while it runs
    spec.loader.exec_module(module)
    return module


def log(message: str) -> None:
    if is_main():
        print(message, file=sys.stderr, flush=True)


def kind_of(recipe: Any, saved: dict[str, Any] | None) -> Any:
    """The recipe that makes or reads a run: ``recipe.run_kind(saved)`` when its runs come in kinds (mlm.py:
    pre-training and classifier runs, told apart by their config.json; None: a new run), else the recipe."""
    return recipe.run_kind(saved) if hasattr(recipe, "run_kind") else recipe


def settings_of(recipe: ModuleType, saved: dict[str, Any]) -> Settings:
    """A run's settings from its `config.json` (the keys that are settings fields; the rest is information;
    ``SETTINGS.from_config`` when the settings also read an older layout of config.json)."""
    import dataclasses

    if hasattr(recipe.SETTINGS, "from_config"):
        return recipe.SETTINGS.from_config(saved)
    names = {f.name for f in dataclasses.fields(recipe.SETTINGS)}
    return recipe.SETTINGS.from_dict({k: v for k, v in saved.items() if k in names})


def config_of(recipe: ModuleType, settings: Settings, task: Any) -> dict[str, Any]:
    """What `config.json` holds: the recipe, its settings, and what the task adds (tokenizer fingerprints)."""
    return {"recipe": recipe.NAME, **settings.to_dict(), **task.config_extra()}


def train(recipe: ModuleType, settings: Settings, ctx: Context,
          adjust: Callable[[Any, nn.Module, Settings], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train (or continue) a run of ``recipe`` in ``ctx.run_dir``, then evaluate its final weights on every
    held-out split and write the report. Returns report.json's dict (empty on ranks other than the main).
    ``adjust(task, model, settings)`` may return settings changes (dotted paths) that need the prepared data and
    model, before anything is saved (recipes/compare.py turns a FLOPs budget into steps with it)."""
    init_distributed(settings.train.device)  # a no-op unless launched by torchrun
    if not ctx.resumed:  # every rank must agree on the directory (its default name has a time stamp)
        ctx = Context(Path(broadcast_object(str(ctx.run_dir))), False, ctx.data_dir)
    torch.manual_seed(settings.train.seed)
    task, model = recipe.prepare(settings, ctx)  # bad input fails here, before the run directory exists
    # with what the data decided (the vocabulary; a fine-tuning run's tokenizer)
    settings = settings.merged({"model": model.config.to_dict(), **task.settings_changes()})
    if adjust is not None and not ctx.resumed:
        settings = settings.merged(adjust(task, model, settings))
    config = config_of(recipe, settings, task)
    if is_main():
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        if not ctx.resumed:
            task.save(ctx.run_dir)
        write_json(ctx.run_dir / "config.json", config)
    log(task.describe())
    params = sum(p.numel() for p in model.parameters())
    log(f"model: {type(model).__name__}, {params:,} parameters -> {ctx.run_dir}")
    summary = task.fit(model, settings.train, ctx.run_dir)
    if not is_main():
        return {}
    start = time.perf_counter()
    device = next(model.parameters()).device
    final, chosen = task.final_model(ctx.run_dir, lambda: type(model)(model.config).to(device))
    evals = task.evaluate_all(final, ctx.run_dir)
    eval_s = time.perf_counter() - start
    report = {"recipe": recipe.NAME, "config": config, "params": params,
              **{k: summary.get(k) for k in ("wall_s", "train_tokens_per_s", "best_step", "best_metric", "steps",
                                            "stopped")},
              "eval_wall_s": eval_s, **task.report_extra(summary), **chosen, "eval": evals}
    sections = task.report_sections(final, ctx.run_dir)
    if summary.get("stopped") == "max_minutes":  # the wall-clock cap is a safety net: say when it fired
        sections.insert(0, ("Budget", f"Stopped by the wall-clock cap (max_minutes={settings.train.max_minutes}) "
                                      f"at step {summary.get('steps')} of {settings.train.max_steps}: the figures "
                                      "are not those of the preset's full budget."))
    images = [*(p.name for p in plot_curves(ctx.run_dir)), *task.images]
    write_report(ctx.run_dir, report, sections, images)
    log(f"done: {ctx.run_dir}  " + task.summary_line(evals))
    return report


def load_run(recipe: ModuleType, checkpoint: str | Path, data_dir: str | None, device: str = "auto",
             changes: dict[str, Any] | None = None) -> tuple[Settings, Any, nn.Module]:
    """A trained run as its settings (with ``changes``, dotted paths -> values: what an evaluation may change,
    the settings' EVALUABLE fields), its task (data read again) and its model on ``device`` with the weights of
    ``checkpoint`` (a run directory: its final weights; or one checkpoint folder of it: `task.load_trained`)."""
    run_dir = run_dir_of(checkpoint)
    saved = read_run_config(run_dir)
    recipe = kind_of(recipe, saved)
    if saved.get("recipe", recipe.NAME) != recipe.NAME:
        raise ValueError(f"{checkpoint}: a run of recipes/{saved['recipe']}.py, not of {recipe.NAME}")
    settings = settings_of(recipe, saved).merged(changes or {})
    task, model = recipe.prepare(settings, Context(run_dir, resumed=True, data_dir=data_dir, for_eval=True))
    model = task.load_trained(checkpoint, run_dir, model.to(resolve_device(device)))
    return settings, task, model.eval()


def evaluate_only(recipe: ModuleType, checkpoint: str | Path, data_dir: str | None, device: str = "auto",
                  out: Path | None = None, changes: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Evaluate a trained run again on every held-out split (the report's numbers: one `evaluate` for both),
    with ``changes`` to its EVALUABLE settings (a beam size); print them, and write `eval.json` into ``out``
    when given. A run made of runs (its config.json lists "runs": mlm.py's one command) gives each of them,
    keyed by its directory's name."""
    run_dir = run_dir_of(checkpoint)
    if "runs" in read_run_config(run_dir) and Path(checkpoint).resolve() == run_dir.resolve():
        parts = sorted(d for d in run_dir.iterdir() if (d / "config.json").is_file())
        results: dict[str, Any] = {d.name: _evaluate(recipe, d, data_dir, device, out, changes, d.name)
                                   for d in parts}
    else:
        results = _evaluate(recipe, checkpoint, data_dir, device, out, changes)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "eval.json", {"checkpoint": str(checkpoint), "eval": results})
    return results


def _evaluate(recipe: ModuleType, checkpoint: str | Path, data_dir: str | None, device: str, out: Path | None,
              changes: dict[str, Any] | None = None, name: str = "") -> dict[str, dict[str, Any]]:
    _, task, model = load_run(recipe, checkpoint, data_dir, device, changes)
    results = task.evaluate_all(model, out / name if out is not None and name else out)
    for line in task.eval_lines(results):
        print(f"{name} {line}".lstrip())
    return results


def load_model(recipe: ModuleType, checkpoint: str | Path, device: str = "auto") -> tuple[Settings, nn.Module, Any]:
    """A trained run's model (the family's class, with the weights of ``checkpoint``: a run directory's best,
    or one checkpoint folder) and its tokenizer, without reading its data: for sampling and serving."""
    from .models import MODELS
    from .tokenizers import load_tokenizer

    run_dir = run_dir_of(checkpoint)
    settings = settings_of(recipe, read_run_config(run_dir))
    model = MODELS[recipe.FAMILY](settings.model).to(resolve_device(device))
    load_checkpoint(checkpoint, model)
    return settings, model.eval(), load_tokenizer(run_dir / "tokenizer")


def train_parts(parent: Path, parts: list[tuple[str, Any, Callable[[], Settings]]], data_dir: str | None,
                changes: Callable[[str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Train the runs a run is made of (mlm.py's one command: pretrain/, finetune/, scratch/, ...), in order, each
    in ``parent/name`` by its kind (``parts``: ``(name, kind, settings)``); one that finished is read, one that was
    interrupted continues (its saved settings with ``changes(name)``: budgets), the others start
    (``settings()``, called only then: a run may depend on an earlier one). Their report.json dicts by name."""
    reports = {}
    for name, kind, new_settings in parts:
        run_dir = parent / name
        if (run_dir / "report.json").is_file():
            log(f"{name}: done already ({run_dir / 'report.json'})")
            reports[name] = json.loads((run_dir / "report.json").read_text())
            continue
        resumed = (run_dir / "config.json").is_file()  # interrupted: its own config.json says what it was
        if resumed:
            saved = read_run_config(run_dir)
            kind = kind_of(kind, saved)
            settings = settings_of(kind, saved).merged({**changes(name), "train.resume": True})
        else:
            settings = new_settings()
        reports[name] = train(kind, settings, Context(run_dir, resumed, data_dir))
    return reports
