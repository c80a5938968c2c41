"""A reference MCP server built with FastMCP (PyPI `fastmcp`), for scripts/peer-bench.sh.

One trivial in-memory tool, `echo { text }`, that returns the text (as text content and as
structured content), over Streamable HTTP at /mcp in stateful session mode (FastMCP's
default: it answers initialize with an Mcp-Session-Id and keeps the session for later POSTs).

    python server.py [PORT]      # PORT 0 (the default) picks a free port

Listens on 127.0.0.1 only. The socket is bound here and handed to Uvicorn, so the port is
known (also for port 0) before serving: once it is about to serve it prints
`listening on http://127.0.0.1:PORT/mcp`. Logs at warning level; Uvicorn stops on SIGTERM or
SIGINT.
"""

import os
import socket
import sys

# No banner, and so no update check against the package index, and quiet logs.
os.environ.setdefault("FASTMCP_SHOW_SERVER_BANNER", "false")
os.environ.setdefault("FASTMCP_CHECK_FOR_UPDATES", "off")
os.environ.setdefault("FASTMCP_LOG_LEVEL", "WARNING")

from fastmcp import FastMCP  # noqa: E402
from fastmcp.tools import ToolResult  # noqa: E402

HOST = "127.0.0.1"
PATH = "/mcp"

mcp = FastMCP("peer-fastmcp-echo")


@mcp.tool(
    description="Returns its text argument",
    output_schema={
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
)
def echo(text: str) -> ToolResult:
    return ToolResult(content=text, structured_content={"text": text})


def main() -> None:
    try:
        port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        sys.exit(f"usage: {sys.argv[0]} [PORT]   (got {sys.argv[1]!r})")

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as error:
        sys.exit(f"cannot listen on {HOST}:{port}: {error}")
    sock.listen(2048)
    port = sock.getsockname()[1]

    print(f"listening on http://{HOST}:{port}{PATH}", flush=True)
    mcp.run(
        transport="streamable-http",
        host=HOST,
        port=port,
        path=PATH,
        log_level="warning",
        stateless_http=False,
        show_banner=False,
        sockets=[sock],
    )


if __name__ == "__main__":
    main()
