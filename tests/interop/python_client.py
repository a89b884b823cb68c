"""Interop: the official MCP Python SDK's client (mcp 1.x) against `swarmctl serve`.

Usage: python_client.py URL
Initializes, lists tools, calls echo, add and fail, reads a resource, gets a prompt, and exits
non-zero on the first thing that is not as the MCP spec says it should be.
"""

import asyncio
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


async def main(url: str) -> None:
    async with streamablehttp_client(url) as (read, write, _get_session_id):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.serverInfo.name == "swarmctl-reference", init.serverInfo
            tools = await session.list_tools()
            names = [t.name for t in tools.tools]
            for expected in ("echo", "add", "sleep", "fail", "blob"):
                assert expected in names, names
            for i in range(20):
                result = await session.call_tool("echo", {"message": f"hello {i}"})
                assert not result.isError, result
                assert result.content[0].text == f"hello {i}", result
            added = await session.call_tool("add", {"a": 2, "b": 40})
            assert added.content[0].text in ("42", "42.0"), added
            failed = await session.call_tool("fail", {"message": "boom"})
            assert failed.isError and failed.content[0].text == "boom", failed
            resource = await session.read_resource("swarmctl://static/text")
            assert "static text" in resource.contents[0].text, resource
            prompt = await session.get_prompt("greeting", {"name": "Ada"})
            assert prompt.messages[0].content.text == "Please greet Ada.", prompt
            await session.send_ping()
    print(f"python-sdk interop ok: {url}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
