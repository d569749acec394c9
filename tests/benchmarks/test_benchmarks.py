"""`benchmarks/run.py --quick` produces the table with every expected row; it never asserts a speed."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (row prefix, needs Hugging Face transformers)
EXPECTED_ROWS = [
    ("gpt-d512 train tokens/s vs HF GPT2LMHeadModel", True),
    ("gpt-d512 train GFLOP/s vs float32 matmul", False),
    ("gpt-d512 train MFU % vs HF GPT2LMHeadModel", True),
    ("gpt-d512 train peak MiB vs HF GPT2LMHeadModel", True),
    ("gpt-small train tokens/s vs HF GPT2LMHeadModel", True),
    ("gpt-small train peak MiB vs HF GPT2LMHeadModel", True),
    ("bert-small train tokens/s vs HF BertForMaskedLM", True),
    ("bert-small train tokens/s, ours with MLM head at masked positions only (select=) vs HF BertForMaskedLM", True),
    ("bert-small train peak MiB vs HF BertForMaskedLM", True),
    ("bert-small train peak MiB, ours with select= vs HF BertForMaskedLM", True),
    ("seq2seq-small train tokens/s vs HF BartForConditionalGeneration", True),
    ("seq2seq-small train tokens/s vs torch.nn.Transformer", False),
    ("seq2seq-small train peak MiB vs HF BartForConditionalGeneration", True),
    ("seq2seq-small train peak MiB vs torch.nn.Transformer", False),
    ("gen-gpt greedy new tokens/s vs HF GPT2 generate", True),
    ("gen-gpt top-50 sample new tokens/s vs HF GPT2 generate", True),
    ("gen-gpt beam 5 new tokens/s vs HF GPT2 generate", True),
    ("gen-seq2seq greedy new tokens/s vs HF Bart generate", True),
    ("gen-seq2seq beam 5 new tokens/s vs HF Bart generate", True),
    ("gen-gpt greedy new tokens/s vs decode-step matmuls alone", False),
    ("gen-gpt top-50 sample new tokens/s vs decode-step matmuls alone", False),
    ("gen-gpt beam 5 new tokens/s vs decode-step matmuls alone", False),
    ("gen-seq2seq greedy new tokens/s vs decode-step matmuls alone", False),
    ("gen-seq2seq beam 5 new tokens/s vs decode-step matmuls alone", False),
]


def parse_table(text: str) -> dict[str, list[str]]:
    """The markdown table's rows keyed by their benchmark cell: `[config, ours, peer, ratio]`."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert lines[0].replace(" ", "") == "|benchmark|config|ours|peer|ratio|", lines[0]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == 5, line
        rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("bench") / "quick.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, out


def _find(rows: dict[str, list[str]], prefix: str) -> list[str]:
    matches = [cells for name, cells in rows.items() if name.startswith(prefix)]
    assert len(matches) == 1, f"expected one row starting with {prefix!r}, found {len(matches)} in {list(rows)}"
    return matches[0]


def _check_numeric(cells: list[str]) -> None:
    _config, ours, peer, ratio = cells
    for value in (ours, peer, ratio):
        assert math.isfinite(float(value)), cells
    assert float(ours) > 0 and float(peer) > 0 and float(ratio) > 0, cells


def test_rows_without_hf_peers(quick_run: tuple[str, Path]) -> None:
    rows = parse_table(quick_run[0])
    for prefix, needs_hf in EXPECTED_ROWS:
        if not needs_hf:
            _check_numeric(_find(rows, prefix))


def test_hf_rows(quick_run: tuple[str, Path]) -> None:
    pytest.importorskip("transformers")
    rows = parse_table(quick_run[0])
    for prefix, needs_hf in EXPECTED_ROWS:
        if needs_hf:
            _check_numeric(_find(rows, prefix))
    assert len(rows) == len(EXPECTED_ROWS), sorted(rows)


def test_report_file(quick_run: tuple[str, Path]) -> None:
    stdout, out = quick_run
    report = out.read_text()
    assert "machine: CPU:" in report and "torch " in report and "benchmarks/run.py --quick" in report
    assert parse_table(report) == parse_table(stdout)


def test_without_transformers_hf_rows_are_skipped_with_a_message(tmp_path: Path) -> None:
    # `sys.modules["transformers"] = None` makes the package unimportable, as if it were not installed.
    argv = ["run.py", "--quick", "--only", "gpt-d512,seq2seq-small", "--out", str(tmp_path / "r.md")]
    script = (f"import runpy, sys; sys.modules['transformers'] = None; sys.argv = {argv!r}; "
              f"runpy.run_path({str(ROOT / 'benchmarks' / 'run.py')!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "transformers is not installed" in proc.stderr
    rows = parse_table(proc.stdout)
    assert not any("HF" in name for name in rows), list(rows)
    for prefix in ("gpt-d512 train GFLOP/s vs float32 matmul", "seq2seq-small train tokens/s vs torch.nn.Transformer",
                   "seq2seq-small train peak MiB vs torch.nn.Transformer"):
        _check_numeric(_find(rows, prefix))


def test_amp_cpu_quick_times_both_precisions_and_their_losses_agree(tmp_path: Path) -> None:
    """benchmarks/amp_cpu.py --quick: a speed row and a first-step loss row per model; the two precisions
    start from the same weights and batch, so their first losses differ by bf16 rounding only."""
    out = tmp_path / "amp.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "amp_cpu.py"), "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = parse_table(proc.stdout)
    assert parse_table(out.read_text()) == rows and "native bf16" in out.read_text()
    for model in ("mlm pretrain", "gpt"):
        _check_numeric(_find(rows, f"{model} train tokens/s, bf16 autocast vs float32"))
        _config, bf16, fp32, _ratio = _find(rows, f"{model} first-step loss, bf16 autocast vs float32")
        assert float(bf16) == pytest.approx(float(fp32), rel=0.02)


def test_unpad_benchmark_times_both_ways_by_padding_share(tmp_path: Path) -> None:
    """benchmarks/unpad.py on a tiny batch: a row per padding share, each asserting the unpadded vectors and
    gradients equal the padded ones (the script fails otherwise)."""
    out = tmp_path / "unpad.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "unpad.py"), "--rounds", "1", "--batch", "4",
                           "--length", "10", "--threads", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines() if line.startswith("| ") and "%" in line]
    assert [r[0].strip() for r in rows] == ["0%", "0%", "5%", "10%", "20%", "35%"]  # 4 x 10: 2% rounds to none
    for row in rows:
        assert all(float(cell) > 0 for cell in row[1:]), row


def test_embed_benchmark_quick_encodes_three_ways_with_equal_vectors(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    out = tmp_path / "embed.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "embed.py"), "--quick", "--skip-search",
                           "--threads", "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "of the positions padding" in text
    names = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert names == ["encoder", "ours", "ours, padded", "sentence-transformers"]
