"""What weight-only int8 costs a trained model: an sft.py run's held-out answers, float32 against int8 weights.

    python benchmarks/int8_quality.py RUN_DIR [--data-dir DIR] [--threads N] [--out PATH]

The run's test instructions (what its report scores: test_2016 en->de BLEU, SST-2 dev accuracy, the share of
answers in the asked format) are answered greedily twice, by the run's model in float32 and by the same model
after ``modules.quantize.quantize_int8`` (``chat --quantize int8``; ``--mode int8-dynamic``: after
``quantize_dynamic_int8``, int8 activations too), and scored the same way; the table also
counts the answers that came out identical (as the run writes them: whitespace collapsed) and the wall time
of each pass. The table goes to stdout and
``benchmarks/results/int8-quality-<run>-<date>.md``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.run import machine_description  # noqa: E402
from transformers_zoo.modules.quantize import QUANTIZERS  # noqa: E402
from transformers_zoo.pipeline import load_run  # noqa: E402

METRICS = (("bleu", "BLEU, test_2016 en->de", 1.0), ("chrf", "chrF", 1.0), ("accuracy", "SST-2 dev accuracy, %", 100),
           ("parsed", "answers in the asked format, %", 100))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="an sft.py run directory")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--mode", default="int8", choices=list(QUANTIZERS),
                        help="int8: weight-only (quantize_int8); int8-dynamic: int8 weights and activations")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "recipes"))
    import sft

    _, task, model = load_run(sft, args.run, args.data_dir, "cpu")
    quantizer = QUANTIZERS[args.mode]
    results, replies = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("float32", "int8"):
            if name == "int8":
                quantizer(model)
            start = time.perf_counter()
            with torch.inference_mode():  # scores, and writes the answers (one a row, the last column)
                results[name] = task.evaluate(model, "test", Path(tmp) / name)
            results[name]["wall_s"] = time.perf_counter() - start
            lines = (Path(tmp) / name / results[name]["answers"]).read_text(encoding="utf-8").splitlines()[1:]
            replies[name] = [line.split("\t")[-1] for line in lines]
            print(f"{name}: {results[name]}", file=sys.stderr)
    same = sum(a == b for a, b in zip(replies["float32"], replies["int8"], strict=True))
    rows = ["| | float32 weights | int8 weights | change |", "| --- | --- | --- | --- |"]
    for key, label, scale in METRICS:
        if key in results["float32"]:
            a, b = scale * results["float32"][key], scale * results["int8"][key]
            rows.append(f"| {label} | {a:.1f} | {b:.1f} | {b - a:+.1f} |")
    rows.append(f"| answers identical to float32's | | {same} of {len(replies['int8'])} "
                f"({100 * same / len(replies['int8']):.1f}%) | |")
    rows.append(f"| wall time of the answers and their scores, s | {results['float32']['wall_s']:.0f} | "
                f"{results['int8']['wall_s']:.0f} | |")
    run = Path(args.run).resolve().name
    text = "\n".join([
        f"# {'Weight-only' if args.mode == 'int8' else 'Dynamic (weights and activations)'} int8 on a trained "
        f"model: {run}, {datetime.date.today()}", "",
        f"`python benchmarks/int8_quality.py {' '.join(argv if argv is not None else sys.argv[1:])}`: "
        f"{len(task.tests)} held-out instructions answered greedily (through the chat template) by the run's model "
        f"in float32 and after `{quantizer.__name__}`; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{machine_description(torch.device('cpu'))}.", "", *rows, ""])
    print(text)
    stem = "int8-quality" if args.mode == "int8" else "int8-dynamic-quality"
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"{stem}-{run}-{datetime.date.today()}.md")
    out.write_text(text)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
