"""Task logic shared by the recipes and the comparison grids: data preparation, loss, evaluation.

One module per task (`lm`, and later translation and classification); each is a few plain functions,
so `recipes/*.py` stay straight scripts and `recipes/compare.py` reuses exactly what they run.
"""
