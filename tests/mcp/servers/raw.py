"""A hand-written JSON-RPC server (no SDK, so nothing checks what it sends): it shakes
hands and lists one tool, whose result is not a valid MCP tool result."""

import json
import sys

TOOL = {
    "name": "malformed",
    "description": "Answers garbage.",
    "inputSchema": {"type": "object", "properties": {}},
    "annotations": {"readOnlyHint": True},
}
RESULTS = {
    "initialize": {
        "protocolVersion": "2025-06-18",
        "capabilities": {"tools": {}},
        "serverInfo": {"name": "raw", "version": "0"},
    },
    "tools/list": {"tools": [TOOL]},
    "tools/call": {"content": "this is not a list of content blocks", "isError": "maybe"},
}

for line in sys.stdin:
    message = json.loads(line)
    if "id" not in message:
        continue  # a notification
    result = RESULTS.get(message["method"], {})
    print(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}), flush=True)
