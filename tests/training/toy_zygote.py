"""Fork server for the fault-injection test: pays Python + torch start-up once, then forks one child per
training run, so a dozen SIGKILLed runs cost seconds instead of a minute.

Each child is a separate process (its own pid, memory and file descriptors) that runs `toy_train.main`
from scratch; the server itself never trains, so nothing but imported modules is shared. Protocol, one
JSON object per line: stdin `{"argv": [...], "log": PATH}` -> stdout `{"pid": N}` when the child starts,
then `{"pid": N, "status": S}` when it ends (S: exit code, or -signum if killed). EOF on stdin stops it.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import torch
import toy_train  # noqa: F401 - sets sys.path and imports torch, the package and the toy model

# The first optimizer construction imports torch._dynamo (seconds): do it once, before forking.
torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])

# SIGKILL leaves the kernel's page cache intact, so what a killed child wrote is visible either way;
# fsync only matters for power loss, which no test here can simulate. Skip its cost (~5 ms per call).
os.fsync = lambda fd: None


def serve() -> None:
    for line in sys.stdin:
        cmd = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fd = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                code = toy_train.main(cmd["argv"])
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "status": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
