"""A server nobody here wrote, for the load engine to talk to: the official MCP Python SDK's
FastMCP (mcp 1.x) with an echo tool, over Streamable HTTP or the legacy HTTP+SSE transport.

Usage: fastmcp_server.py PORT sse|json|legacy
  sse:    the SDK's default: stateful sessions, SSE replies
  json:   stateless_http=True, json_response=True
  legacy: the 2024-11-05 HTTP+SSE transport (GET /sse, POST to the announced endpoint)
"""

import sys

from mcp.server.fastmcp import FastMCP

port = int(sys.argv[1])
mode = sys.argv[2]
mcp = FastMCP(
    "interop",
    host="127.0.0.1",
    port=port,
    stateless_http=(mode == "json"),
    json_response=(mode == "json"),
)


@mcp.tool()
def echo(message: str) -> str:
    """Returns the message."""
    return message


mcp.run(transport="sse" if mode == "legacy" else "streamable-http")
