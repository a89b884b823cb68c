"""The MCP server of stacks/python-sdk.yaml: the official MCP Python SDK's FastMCP (PyPI `mcp`
1.x), nobody's code here but two tools, served over Streamable HTTP with stateful sessions,
replying with SSE streams (the SDK's default) or JSON (--json-response, what the stack runs). It
has no health route and exports no metrics: swarmctl checks it through MCP itself.

    server.py [--port 8080] [--json-response]
                                       serve on 0.0.0.0:PORT/mcp (replies as SSE streams,
                                       the SDK's default, or as JSON)
    server.py [--port 8080] --health   exit 0 when an MCP session opens on 127.0.0.1:PORT
                                       (the container healthcheck)
"""

import argparse
import json
import sys
import urllib.request

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=8080)
parser.add_argument("--health", action="store_true")
parser.add_argument("--json-response", action="store_true", help="answer POSTs with JSON, not SSE streams")
args = parser.parse_args()


def healthy(port: int) -> bool:
    """An `initialize` answered with a result, then the session closed: healthy is what a
    client would see, not a route of its own."""
    url = f"http://127.0.0.1:{port}/mcp"
    body = json.dumps({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "healthcheck", "version": "1"}},
    }).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=2) as r:
            text = r.read(65536).decode("utf-8", "replace")
            session = r.headers.get("Mcp-Session-Id")
        if session:
            close = urllib.request.Request(url, method="DELETE", headers={"Mcp-Session-Id": session})
            try:
                urllib.request.urlopen(close, timeout=2).close()
            except Exception:
                pass
        return '"result"' in text
    except Exception as e:
        print(f"unhealthy: {e}", file=sys.stderr)
        return False


if args.health:
    sys.exit(0 if healthy(args.port) else 1)

from mcp.server.fastmcp import FastMCP  # noqa: E402 (the healthcheck needs none of it)

# WARNING: uvicorn's access log (a line per request) would swamp the service's logs.
mcp = FastMCP(
    "python-sdk-example", host="0.0.0.0", port=args.port, log_level="WARNING", json_response=args.json_response
)


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@mcp.tool()
def word_count(text: str) -> int:
    """Counts the words of a text."""
    return len(text.split())


mcp.run(transport="streamable-http")
