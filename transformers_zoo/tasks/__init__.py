"""Task logic shared by the recipes and the comparison grids: data preparation, loss, evaluation.

One module per task (`lm`, `mlm`, `classification`, `translation`, ...); each is a few plain functions,
so `recipes/*.py` stay straight scripts and `recipes/compare.py` reuses exactly what they run. `base.py`
is the Task interface and `fit`, which the recipes train with; it is implemented by `lm.LMTask`,
`translation.TranslationTask` (a package: settings, data, task, prefix_lm, weights, report),
`pretraining.PretrainTask` (MLM on a corpus, with `PretrainSettings` and mlm.py's presets) and
`classification.ClassificationTask` (`classification_settings`: its settings and presets); `finetuning` is a
classifier run for the pipeline (where it starts: a pre-training run, a Hugging Face BERT, or nothing) and
`pretraining_gain` what pre-training gained.
"""
