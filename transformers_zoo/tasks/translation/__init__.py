"""Translation in one place: typed settings (`settings`), sentence pairs and tokenizers (`data`), the task
(`task.TranslationTask`: batches, loss, evaluate, final weights), the decoder-only format (`prefix_lm`), the
choice and loading of final weights (`weights`) and what a run shows (`report`). recipes/translate.py and
recipes/compare.py's translation cells run it; search is `generation.generate_many`."""

from .data import TranslationData, load_pairs, load_tokenizers, prepare_translation_data
from .report import attention_maps
from .settings import FILES, SearchSettings, TranslationDataSettings, TranslationSettings
from .task import FORMATS, TranslationTask, prepare_translation_task, translate, translate_lines
from .weights import load_translator

__all__ = ["FILES", "FORMATS", "SearchSettings", "TranslationData", "TranslationDataSettings", "TranslationSettings",
           "TranslationTask", "attention_maps", "load_pairs", "load_tokenizers", "load_translator",
           "prepare_translation_data", "prepare_translation_task", "translate", "translate_lines"]
