"""What `bench/evals.py` runs on: a loopback OpenAI-compatible model server, a bench suite
whose agent makes a known number of model calls per task, and the peers' configurations.

- `server`: the model server (asyncio, keep-alive, in a child process), scripted by what a
  request carries: tools offered and no tool result yet → one tool call; else a final answer.
  A path prefix ``/delay/<ms>`` makes it answer after that long.
- `tools`, `agent`, `policy.yaml`, `suites`: the opsgate side (one read tool, the shared
  executor loop, so each task is exactly two model calls: a tool call, then the answer).
- `peers`: installing promptfoo and inspect_ai under ``bench/.peers`` and writing their
  configurations for the same tasks.
"""
