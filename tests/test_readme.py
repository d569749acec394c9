"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        namespace: dict = {}
        exec(compile(code, str(README), "exec"), namespace)
    assert namespace["logits"].shape == (2, 5, 1000)
    assert namespace["class_logits"].shape == (2, 2)
    assert len(namespace["nbest"]) == 2 and len(namespace["nbest"][0]) == 3
