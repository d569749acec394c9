"""Instruction tuning (supervised fine-tuning) of a decoder: conversations packed into blocks, loss on the
assistant's tokens only, answers generated through the chat template and scored.

    task, model = prepare_sft(settings, ctx)   # recipes/sft.py's prepare: data, tokenizer with chat tokens, model
    task.loss(model, batch)                    # cross-entropy over assistant tokens (replies and their end of turn)
    task.evaluate(model, "test")               # greedy answers: BLEU (test_2016_flickr en->de), SST-2 accuracy,
                                               # the share in the asked format; the loss of the references

Packing (packing.py): each conversation is encoded by ``encode_training`` (ids, and which are the assistant's),
and whole conversations are packed first-fit, in a seeded order, into blocks of ``block_size + 1`` tokens (inputs
and shifted labels); the rest of a block is padding (masked, never scored). A conversation longer than a block is
dropped, not truncated (a cut reply would teach the model to stop mid-answer): the count is printed and reported.
Attention is causal over the whole block, so a conversation sees the ones packed before it (no
document-causal mask: the model's stack takes one key mask per row; every conversation opens with the
template's start marker, which tells the boundaries, and its loss covers its own replies only).

A run from scratch (no ``init``) first trains ``pretrain_steps`` steps of next-token prediction on running text
(:func:`corpora.instructions.pretraining_text`), then instruction-tunes: one stream (``batching.PhasedStream``), one
schedule, one resumable run (start.py). settings.py holds the typed settings; task.py the task and its report.
"""

from .packing import Packed, PackedCollator, encode_all, pack, packed_stream
from .settings import MERGED_FILE, LoRASettings, SFTDataSettings, SFTSettings
from .start import chat_rows, load_chat_model, load_start, prepare_sft, train_rows_only
from .task import SFTTask, answer, parses, read_report, specialists_table, trained_what

__all__ = ["MERGED_FILE", "LoRASettings", "Packed", "PackedCollator", "SFTDataSettings", "SFTSettings",
           "SFTTask", "answer", "chat_rows", "encode_all", "load_chat_model", "load_start", "pack", "packed_stream",
           "parses", "prepare_sft", "read_report", "specialists_table", "train_rows_only", "trained_what"]
