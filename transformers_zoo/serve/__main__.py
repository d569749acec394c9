"""`python -m transformers_zoo.serve NAME=RUN_DIR ...`: the server's command line is `cli/serve.py`."""

from ..cli import main_guard
from ..cli.serve import main

if __name__ == "__main__":
    main_guard(main)
