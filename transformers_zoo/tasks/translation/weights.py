"""Which weights a translation run reports: the best checkpoint on validation, or the average of the last
checkpoints (`training.checkpoint.average_checkpoints`, saved in `RUN_DIR/averaged/`), whichever scores better;
and those weights loaded back for --eval-only and the translate command."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import save_model
from torch import nn

from ...config import ModelConfig
from ...interop import load_hf_translator
from ...models import EncoderDecoder
from ...runs import read_run_config, run_dir_of, write_json
from ...tokenizers import Tokenizer
from ...training.checkpoint import MODEL_FILE, average_checkpoints, load_checkpoint, load_weights
from .data import load_tokenizers
from .settings import SearchSettings, TranslationSettings

AVERAGED = "averaged"


def fingerprint_of(cfg: ModelConfig, src_tok: Tokenizer, tgt_tok: Tokenizer) -> dict[str, Any]:
    """What a translation checkpoint belongs to: the model config and both tokenizers' hashes."""
    return {"model": cfg.to_dict(), "tokenizer": tgt_tok.fingerprint, "src_tokenizer": src_tok.fingerprint}


def select_weights(task: Any, run_dir: Path, new_model: Callable[[], nn.Module]) -> tuple[nn.Module, dict[str, Any]]:
    """The better on validation (`task.search.select`: loss or greedy BLEU) of the best checkpoint and the average
    of the last `task.search.average_last` ones; returns `(model, selection)`: `selection` holds `selected` (the
    weights' name, steps, criterion and path), `candidates` (each one's steps and validation scores), and the
    chosen `model` with its validation scores `val`. `new_model()` builds an empty model."""
    search = task.search
    model = new_model()
    manifest = load_checkpoint(run_dir, model)
    candidates = {"best": {"steps": [manifest["step"]], **task.evaluate(model, "val")}}
    chosen, chosen_path = model, None
    if search.average_last > 1:
        averaged = new_model()
        dirs = average_checkpoints(run_dir, search.average_last, averaged)
        if len(dirs) > 1:
            steps = [int(d.name.split("_")[1]) for d in dirs]
            avg_dir = run_dir / AVERAGED
            avg_dir.mkdir(exist_ok=True)
            save_model(averaged, str(avg_dir / MODEL_FILE), force_contiguous=True)
            write_json(avg_dir / "averaged.json", {"steps": steps, "fingerprint": task.fingerprint(averaged)})
            candidates[AVERAGED] = {"steps": steps, **task.evaluate(averaged, "val")}
            better = (candidates[AVERAGED]["loss"] < candidates["best"]["loss"] if search.select == "loss"
                      else candidates[AVERAGED]["bleu_greedy"] > candidates["best"]["bleu_greedy"])
            if better:
                chosen, chosen_path = averaged, avg_dir
    name = AVERAGED if chosen_path is not None else "best"
    selected = {"checkpoint": name, "steps": candidates[name]["steps"], "select": search.select,
                "path": str((chosen_path or Path(manifest["path"])).relative_to(run_dir))}
    val = {k: v for k, v in candidates[name].items() if k != "steps"}
    return chosen, {"selected": selected, "candidates": candidates, "model": chosen, "val": val}


def load_selected(checkpoint: str | Path, run_dir: Path, model: nn.Module, fingerprint: dict[str, Any]
                  ) -> tuple[nn.Module, str]:
    """The weights `checkpoint` names, loaded into `model`, and a description of them: a run directory gives
    those its report selected (averaged or best; the best while no report exists yet); `RUN_DIR/averaged` or
    `RUN_DIR/checkpoints/step_*` give those weights."""
    path = Path(checkpoint)
    if path.resolve() == run_dir.resolve() and _selected(run_dir) == AVERAGED:
        path = run_dir / AVERAGED
    if path.name == AVERAGED and (path / MODEL_FILE).is_file():
        load_weights(path, model)
        steps = json.loads((path / "averaged.json").read_text()).get("steps", [])
        return model, f"average of steps {', '.join(map(str, steps))}"
    manifest = load_checkpoint(path, model, fingerprint=fingerprint)
    return model, f"step {manifest['step']} ({Path(manifest['path']).name})"


def _selected(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "report.json").read_text()).get("selected", {}).get("checkpoint")
    except (OSError, ValueError):
        return None


def load_translator(checkpoint: str | Path | None = None, init: str | None = None
                    ) -> tuple[EncoderDecoder, Tokenizer, Tokenizer, SearchSettings]:
    """A translator without data: `(model, source tokenizer, target tokenizer, search settings)` of a trained
    translate run (the weights `load_selected` picks for `checkpoint`, a run directory or one of its weight
    folders), or of a Hugging Face checkpoint `init` ("hf:PATH"; default search settings)."""
    if init is not None:
        return (*load_hf_translator(init), SearchSettings())
    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"{checkpoint}: no such run directory")
    run_dir = run_dir_of(checkpoint)
    saved = read_run_config(run_dir)
    if saved.get("recipe") != "translate":
        raise ValueError(f"{checkpoint}: a {saved.get('recipe')!r} run, not a translate run")
    names = set(TranslationSettings.__dataclass_fields__)
    settings = TranslationSettings.from_dict({k: v for k, v in saved.items() if k in names})
    if settings.family != "encoder_decoder":
        raise ValueError(f"{checkpoint}: a {settings.family} translation run; translating sentences one by one "
                         "serves encoder-decoder runs (this run's test translations are in its hyp/ folder)")
    src_tok, tgt_tok = load_tokenizers(run_dir)
    model = EncoderDecoder(settings.model)
    load_selected(checkpoint, run_dir, model, fingerprint_of(settings.model, src_tok, tgt_tok))
    return model.eval(), src_tok, tgt_tok, settings.eval
