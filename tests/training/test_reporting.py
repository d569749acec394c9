"""metrics.jsonl -> plots, and report.json / report.md."""

from __future__ import annotations

import io
import json

from transformers_zoo.training import plot_curves, write_report
from transformers_zoo.training.metrics_log import MetricsLog, read_metrics
from transformers_zoo.training.progress import Progress

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_curves_writes_loss_and_lr_png(tmp_path):
    log = MetricsLog(tmp_path)
    for step in range(1, 11):
        log.write({"step": step, "split": "train", "loss": 5.0 / step, "lr": 1e-3 * min(step / 4, 1),
                   "tokens_per_s": 100.0, "elapsed_s": step * 0.1, "epoch": 0})
        if step % 5 == 0:
            log.write({"step": step, "split": "val", "val_loss": 4.0 / step, "val_bleu": 10.0})
    with open(log.path, "a") as f:
        f.write('{"step": 11, "split": "tra')  # a line torn by a crash is ignored
    assert len(read_metrics(tmp_path)) == 12
    written = plot_curves(tmp_path)
    assert [p.name for p in written] == ["loss.png", "lr.png"]
    for p in written:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 1000
    log.truncate_after(5)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5, 5]
    assert plot_curves(tmp_path / "empty") == []


def test_write_report_json_and_markdown(tmp_path):
    report = {
        "recipe": "translate", "params": 9123456, "wall_s": 1834.2, "train_tokens_per_s": 4210.0, "best_step": 5200,
        "eval": {"val": {"loss": 1.93},
                 "test": {"loss": 1.98, "bleu": 33.1, "signature": "nrefs:1|case:mixed"}},
    }
    json_path, md_path = write_report(tmp_path, report, sections=[("Samples", "| src | hyp |\n| --- | --- |")],
                                      images=["loss.png", str(tmp_path / "lr.png")])
    assert json.loads(json_path.read_text()) == report
    md = md_path.read_text()
    assert md.startswith("# translate report")
    assert "| split | loss | bleu |" in md and "| test | 1.98 | 33.1 |" in md and "| val | 1.93 |  |" in md
    assert "- test signature: `nrefs:1|case:mixed`" in md and "- parameters: 9,123,456" in md
    assert "## Samples\n\n| src | hyp |" in md
    assert "![loss](loss.png)" in md and "![lr](lr.png)" in md


def test_progress_prints_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    progress = Progress(total=100, initial=0, stream=stream)
    assert progress.bar is None  # StringIO is no TTY: no carriage-return bar in log files
    progress.log({"step": 20, "loss": 2.5, "lr": 4e-4, "tokens_per_s": 12345.6, "elapsed_s": 65.0, "epoch": 1},
                 eta_s=3900.0)
    assert stream.getvalue() == ("step 20/100 | epoch 1 | loss 2.5000 | lr 4.00e-04 | 12,346 tok/s | "
                                 "elapsed 1m05s | eta 1h05m\n")
    classifier = io.StringIO()  # a classifier's loss counts examples, not tokens: the line says so
    Progress(total=100, initial=0, stream=classifier, unit="ex").log(
        {"step": 20, "loss": 0.5, "lr": 1e-4, "tokens_per_s": 300.0, "elapsed_s": 65.0}, eta_s=None)
    assert "| 300 ex/s |" in classifier.getvalue() and "tok/s" not in classifier.getvalue()
    quiet = io.StringIO()
    Progress(total=None, initial=0, enabled=False, stream=quiet).message("hidden")
    assert quiet.getvalue() == ""
