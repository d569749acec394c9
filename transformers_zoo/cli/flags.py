"""The flags every recipe shares, and the helpers recipes build their own with.

`add_common_args` adds the recipe contract's flags (see DESIGN.md, "Recipe contract"):
`--data-dir --preset --out --device --seed --max-steps --max-minutes --resume --eval-only --checkpoint`,
training overrides (`--lr --warmup-steps ...`) and an override for every `ModelConfig` field the recipe's
model family reads (`--positional rope --norm rmsnorm ...`; `IGNORED_FIELDS` names those a family's model
never reads), generated from the dataclass so the two never drift apart. The rest are argument types
(`absolute`, `fractions`, `str2bool`) and small groups several recipes share.
"""

from __future__ import annotations

import argparse
import pathlib
import types
import typing
from collections.abc import Callable
from typing import Any

from .. import config as model_config
from ..config import DERIVED_FIELDS, IGNORED_FIELDS, ModelConfig, model_fields  # noqa: F401  (a family's fields)
from ..training.config import AMPS

# the variant registries themselves (modules/), so a variant registered there is a choice here
CHOICES = {"positional": model_config.POSITIONAL_BUILDERS, "norm": model_config.NORM_BUILDERS,
           "ffn": model_config.FFN_MODULES, "pooling": model_config.POOLINGS,
           "sinusoidal_layout": model_config.SINUSOIDAL_LAYOUTS}
MODEL_HELP = {
    "d_model": "width of the residual stream", "n_heads": "attention heads",
    "n_kv_heads": "key/value heads (1 = MQA, < n_heads = GQA; default: n_heads)",
    "n_layers": "layers per stack", "n_encoder_layers": "encoder layers (encoder-decoder)",
    "n_decoder_layers": "decoder layers (encoder-decoder)", "d_ff": "FFN hidden width",
    "max_len": "longest sequence (learned positions need it)", "dropout": "dropout on residual branches",
    "attention_dropout": "dropout on attention weights", "norm_first": "pre-norm (true) or post-norm (false)",
    "bias": "biases in linear layers and norms",
    "qkv_bias": "biases of the query/key/value projections (default: as --bias)",
    "tie_embeddings": "tie output projection to the embedding",
    "scale_embeddings": "multiply embeddings by sqrt(d_model)",
    "share_src_tgt_embeddings": "one embedding for source and target (joint vocabulary)",
    "d_head": "width of one attention head (default: d_model / n_heads)",
    "embedding_norm": "norm the embeddings before the first layer (default: in post-norm stacks only)",
    "attention_scale": "multiply attention scores by this (default: 1/sqrt(head width))",
    "sliding_window": "causal attention sees only the last N keys, itself included (Mistral; default: all)",
    "output_bias": "a bias on the output logits", "scale_output": "scale final states by d_model**-0.5 (T5)",
    "positional_offset": "learned positions: table rows before position 0 (BART: 2)",
    "sinusoidal_layout": "sinusoidal: interleaved sin/cos pairs or split halves (Marian)",
}

def _amp(value: str) -> str:
    if value not in AMPS:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(AMPS)}")
    return value


# TrainConfig fields a recipe exposes as flags (name -> type, help).
TRAIN_FLAGS: dict[str, tuple[Callable[[str], Any], str]] = {
    "lr": (float, "peak learning rate"), "warmup_steps": (int, "linear warm-up steps"),
    "schedule": (str, "inverse_sqrt | cosine | constant"), "min_lr_ratio": (float, "cosine floor as a fraction of lr"),
    "weight_decay": (float, "AdamW decoupled weight decay (not on biases, norms, embeddings)"),
    "accum_steps": (int, "micro-batches per optimizer step"), "grad_clip": (float, "clip the gradient norm (0 = off)"),
    "eval_every": (int, "evaluate every N steps"), "save_every": (int, "checkpoint every N steps"),
    "log_every": (int, "log every N steps"), "keep_last": (int, "checkpoints kept besides the best"),
    "patience": (int, "stop after N evaluations without improvement"), "max_epochs": (int, "stop after N epochs"),
    "amp": (_amp, "bf16 autocast: auto (on CUDA only) | bf16 (on a CPU too; with AMX/AVX512-BF16 "
                  "an encoder trains 1.6-2.2x faster, benchmarks/amp_cpu.py) | off"),
}


class StoreGiven(argparse.Action):
    """Store the value and note the flag in `namespace._given`: a resume must know whether `--seed 0` or
    `--device cpu` was typed or is only the default (see resumed_settings)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace._given = {*getattr(namespace, "_given", ()), self.dest}


def str2bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _field_type(annotation: Any) -> Callable[[str], Any]:
    hints = typing.get_type_hints(ModelConfig)
    tp = hints.get(annotation, annotation)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return str2bool if tp is bool else tp


def add_common_args(parser: argparse.ArgumentParser, presets: dict[str, dict], default_preset: str,
                    family: str) -> None:
    """The recipe contract's flags, training overrides and one flag per ModelConfig field `family` reads."""
    run = parser.add_argument_group("run")
    run.add_argument("--data-dir", default=None,
                     help="data sets folder (default: env TZOO_DATA_DIR, else data/ in the repo, downloading "
                          "there when missing); not saved with a run, so give it again with --resume")
    run.add_argument("--preset", default=default_preset, choices=sorted(presets), action=StoreGiven,
                     help=f"model/training size (default: {default_preset}); 'tiny' is a seconds-long smoke test")
    run.add_argument("--out", default=None, help="run directory (default: runs/<recipe>-<preset>-<time>)")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], action=StoreGiven,
                     help="auto = cuda when available")
    run.add_argument("--seed", type=int, default=0, action=StoreGiven,
                     help="seed of everything random (default 0; a resumed run keeps its own)")
    run.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
    run.add_argument("--max-minutes", type=float, default=None, help="stop after N minutes of training")
    run.add_argument("--resume", metavar="RUN_DIR", default=None,
                     help="continue the run in RUN_DIR from its newest complete checkpoint, with its saved settings "
                          "and budgets (--max-steps/--max-minutes/--max-epochs given here replace the budgets; any "
                          "other setting is refused)")
    run.add_argument("--eval-only", action="store_true", help="only evaluate --checkpoint, no training")
    run.add_argument("--checkpoint", metavar="RUN_DIR", default=None,
                     help="run directory (or checkpoint folder) to evaluate or use")
    run.add_argument("--compile", action="store_true", help="torch.compile the model")
    run.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    train = parser.add_argument_group("training (override the preset)")
    for name, (tp, help_) in TRAIN_FLAGS.items():
        train.add_argument("--" + name.replace("_", "-"), dest="train__" + name, metavar=name.upper(), type=tp,
                           default=None, help=help_)
    model = parser.add_argument_group(f"model (override the preset; every ModelConfig field {family} reads)")
    for name in model_fields(family):
        kwargs: dict[str, Any] = {"dest": "model__" + name, "default": None, "type": _field_type(name)}
        if name in CHOICES:
            kwargs["choices"] = CHOICES[name]
        else:
            kwargs["metavar"] = name.upper()
        kwargs["help"] = MODEL_HELP.get(name, name.replace("_", " "))
        model.add_argument("--" + name.replace("_", "-"), **kwargs)


def overrides(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """Flags given on the command line for one group (`model__` or `train__`: a double underscore, so a
    recipe's own flags such as `--train-tsv` never collide), without the prefix."""
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}


def init_model_overrides(args: argparse.Namespace, allowed: tuple[str, ...] = ("dropout", "attention_dropout"),
                         init: str | None = None) -> dict[str, Any]:
    """The model flags given with ``--init CHECKPOINT`` (``init``, else ``args.init``), whose architecture is the
    checkpoint's: only ``allowed`` fields (dropout by default) may change; any other is refused, naming it."""
    given = overrides(args, "model__")
    for key, value in given.items():
        if key not in allowed:
            flags = " and ".join("--" + k.replace("_", "-") for k in allowed)
            raise ValueError(f"--{key.replace('_', '-')} {value}: the architecture comes from --init "
                             f"{init or args.init}; only {flags} may change")
    return given


class VocabAction(argparse.Action):
    """``--vocab 8000``, ``--vocab bpe`` or ``--vocab bpe:8000``: the size sets ``data.vocab``, the kind
    ``data.tokenizer`` (unless --tokenizer says otherwise)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for part in values.split(":"):
            if part.isdigit():
                namespace.data__vocab = int(part)
            elif part in ("unigram", "bpe"):
                namespace.data__tokenizer = namespace.data__tokenizer or part
            else:
                parser.error(f"--vocab: expected a size, unigram or bpe, or KIND:SIZE (bpe:8000), got {values!r}")


def add_vocab_args(group: argparse._ArgumentGroup) -> None:
    """--vocab, --tokenizer and --pretokenize of the recipes that train a sentencepiece vocabulary of their own."""
    group.add_argument("--vocab", action=VocabAction, dest="data__vocab", default=None, metavar="SIZE|KIND|KIND:SIZE",
                       help="sentencepiece vocabulary trained on the pre-training text (or, from scratch, the train "
                            "texts): size, kind (unigram, bpe) or both, e.g. bpe:8000 (preset: unigram:8000)")
    group.add_argument("--tokenizer", dest="data__tokenizer", choices=["unigram", "bpe"], default=None,
                       help="sentencepiece kind (as --vocab KIND)")
    group.add_argument("--pretokenize", dest="data__pretokenize", choices=["none", "ptb"], default=None,
                       help="what the tokenizer does to every text first: ptb lower-cases it and splits it into Penn "
                            "Treebank tokens (it 's, did n't, `` ''), the form SST-2 is written in, so raw reviews "
                            "pre-train the words SST-2 spells; none keeps text as it is (preset: ptb)")


def add_labelled_data_args(group: argparse._ArgumentGroup, tasks: list[str]) -> None:
    """The labelled-data flags of the encoder recipes (classify.py, mlm.py's one command)."""
    flags = [("--batch-tokens", int, "N", "fine-tuning batch size in tokens, padding included (bucketed by length)"),
             ("--task", None, None, "labelled data: sst2 (test: dev.tsv) or imdb (25k reviews, test: its 25k test "
                                    "reviews, head+tail truncation at 256 tokens) (default: sst2)"),
             ("--train-tsv", absolute, "FILE", "labelled training file (TSV with a header; default: the --task data)"),
             ("--valid-tsv", absolute, "FILE", "validation file for checkpoint selection (default: 10%% of "
                                               "--train-tsv held out)"),
             ("--test-tsv", absolute, "FILE", "test file, scored once"),
             ("--text-column", str, "NAME", "column of the text (default: sentence)"),
             ("--label-column", str, "NAME", "column of the label, integer or string, any number of classes "
                                             "(default: label)"),
             ("--token-mask", float, "P", "regulariser: replace this share of the training tokens by [MASK], "
                                          "afresh every batch (preset: cpu 0.0)")]
    for flag, tp, metavar, help_ in flags:
        kwargs = {"choices": tasks} if tp is None else {"type": tp, "metavar": metavar}
        group.add_argument(flag, dest="data__" + flag[2:].replace("-", "_"), default=None, help=help_, **kwargs)


def absolute(path: str | None) -> str | None:
    """A path as given on the command line, made absolute (saved in config.json, read from any directory)."""
    return None if path is None else str(pathlib.Path(path).expanduser().resolve())


def fractions(value: str) -> list[float]:
    """``0.9,0.1,0`` -> ``[0.9, 0.1, 0.0]``; anything else is kept as typed, for the settings to refuse."""
    try:
        return [float(x) for x in value.split(",")]
    except ValueError:
        return value  # type: ignore[return-value]


def numbers(kind: type) -> Callable[[str], tuple]:
    def parse(value: str) -> tuple:
        try:
            return tuple(kind(x) for x in value.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None

    return parse

def add_field_flags(group: argparse._ActionsContainer, flags: dict[str, tuple]) -> None:
    """A flag per entry `dest -> (type or list of choices, metavar, help)` (`data__max_tokens` -> `--max-tokens`)."""
    for dest, (tp, metavar, help_) in flags.items():
        kind = {"choices": tp} if isinstance(tp, list) else {"type": tp, "metavar": metavar}
        group.add_argument("--" + dest.split("__")[-1].replace("_", "-"), dest=dest, default=None, help=help_, **kind)
