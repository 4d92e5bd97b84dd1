"""Not an MCP server: it prints lines that are not JSON-RPC and never answers."""

import sys
import time

print("hello, I am a shell script, not MCP", flush=True)
for line in sys.stdin:
    print(f"you said: {line.strip()[:40]}", flush=True)
time.sleep(30)
