"""A server nobody here wrote, for the load engine to talk to: the official MCP Python SDK's
FastMCP (mcp 1.x) with an echo tool, over Streamable HTTP.

Usage: fastmcp_server.py PORT sse|json
  sse:  the SDK's default: stateful sessions, SSE replies
  json: stateless_http=True, json_response=True
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


mcp.run(transport="streamable-http")
