// A reference MCP server built with the official TypeScript SDK (@modelcontextprotocol/sdk),
// for scripts/peer-bench.sh: one trivial in-memory tool, `echo { text }`, that returns the text
// (as text content and as structured content), over Streamable HTTP at /mcp in stateful mode —
// the SDK's documented pattern: a StreamableHTTPServerTransport with a sessionIdGenerator per
// session, kept in a map by Mcp-Session-Id, each connected to its own McpServer.
//
//   node server.mjs [PORT]      # PORT 0 (the default) picks a free port
//
// Listens on 127.0.0.1 only, prints `listening on http://127.0.0.1:PORT/mcp` once listening,
// and stops on SIGTERM or SIGINT.
import { randomUUID } from "node:crypto";

import { createMcpExpressApp } from "@modelcontextprotocol/sdk/server/express.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

const HOST = "127.0.0.1";
const port = Number.parseInt(process.argv[2] ?? "0", 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`usage: node server.mjs [PORT]   (got ${process.argv[2]})`);
    process.exit(2);
}

function newServer() {
    const server = new McpServer({ name: "peer-ts-echo", version: "0.0.0" });
    server.registerTool(
        "echo",
        {
            description: "Returns its text argument",
            inputSchema: { text: z.string() },
            outputSchema: { text: z.string() },
        },
        async ({ text }) => ({
            content: [{ type: "text", text }],
            structuredContent: { text },
        }),
    );
    return server;
}

/** Live sessions' transports by Mcp-Session-Id. */
const transports = new Map();

// Express with the SDK's DNS-rebinding protection for a loopback host and a JSON body parser.
const app = createMcpExpressApp({ host: HOST });

function badRequest(res, message) {
    res.status(400).json({ jsonrpc: "2.0", error: { code: -32000, message }, id: null });
}

app.post("/mcp", async (req, res) => {
    try {
        const sessionId = req.headers["mcp-session-id"];
        let transport;
        if (sessionId && transports.has(sessionId)) {
            transport = transports.get(sessionId);
        } else if (!sessionId && isInitializeRequest(req.body)) {
            transport = new StreamableHTTPServerTransport({
                sessionIdGenerator: () => randomUUID(),
                onsessioninitialized: (id) => {
                    transports.set(id, transport);
                },
            });
            transport.onclose = () => {
                if (transport.sessionId) transports.delete(transport.sessionId);
            };
            await newServer().connect(transport);
        } else if (sessionId) {
            res.status(404).json({
                jsonrpc: "2.0",
                error: { code: -32001, message: "Session not found" },
                id: null,
            });
            return;
        } else {
            badRequest(res, "Bad Request: No valid session ID provided");
            return;
        }
        await transport.handleRequest(req, res, req.body);
    } catch (error) {
        console.error("error handling an MCP request:", error);
        if (!res.headersSent) {
            res.status(500).json({
                jsonrpc: "2.0",
                error: { code: -32603, message: "Internal server error" },
                id: null,
            });
        }
    }
});

// GET (the server-to-client SSE stream) and DELETE (end the session) on an existing session.
async function sessionRequest(req, res) {
    const sessionId = req.headers["mcp-session-id"];
    const transport = sessionId && transports.get(sessionId);
    if (!transport) {
        badRequest(res, "Bad Request: No valid session ID provided");
        return;
    }
    await transport.handleRequest(req, res);
}
app.get("/mcp", sessionRequest);
app.delete("/mcp", sessionRequest);

const listener = app.listen(port, HOST, (error) => {
    if (error) {
        console.error(`cannot listen on ${HOST}:${port}: ${error.message}`);
        process.exit(1);
    }
    console.log(`listening on http://${HOST}:${listener.address().port}/mcp`);
});
listener.on("error", (error) => {
    console.error(`cannot listen on ${HOST}:${port}: ${error.message}`);
    process.exit(1);
});

let stopping = false;
async function stop() {
    if (stopping) return;
    stopping = true;
    for (const transport of transports.values()) {
        await transport.close().catch(() => {});
    }
    listener.close(() => process.exit(0));
    listener.closeAllConnections?.();
    // Do not hang on a connection that will not close.
    setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
