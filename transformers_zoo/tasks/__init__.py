"""Task logic shared by the recipes and the comparison grids: data preparation, loss, evaluation.

One module per task (`lm`, `mlm`, `classification`, `translation`, ...); each is a few plain functions,
so `recipes/*.py` stay straight scripts and `recipes/compare.py` reuses exactly what they run. `base.py`
is the Task interface and `fit`; `translation_run.TranslationTask` implements it for translation
(`translation_settings` turns the translate recipe's flags into its settings).
"""
