"""An external agent that fails as its task (``$OPSGATE_TASK``) says: it crashes, hangs
(with a child of its own), prints bytes that are not text, or answers without a tool (a
question for the requester, said as one, or a plain answer)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

task = os.environ["OPSGATE_TASK"]
sys.stdin.read()
if task.startswith("crash"):
    print("half an answer")
    print("Traceback (most recent call last):\nRuntimeError: the agent broke", file=sys.stderr)
    sys.exit(3)
elif task.startswith("hang"):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(os.environ["CHILD_PID_FILE"], "w") as out:
        out.write(str(child.pid))
    time.sleep(120)
elif task.startswith("garbage"):
    sys.stdout.buffer.write(b"\xff\xfe\x00\x1b[31m" + os.urandom(64))
elif task.startswith("clarify"):  # a question needs no tool: said so
    print('{"output": "Which order do you mean?", "needs_clarification": true}')
else:  # answers without ever listing or calling a tool
    print("Your order is on its way.")
