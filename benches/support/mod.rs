//! What the HTTP benchmarks share: starting a server process and learning the address it bound,
//! and a bare keep-alive HTTP/1.1 connection that speaks MCP with as little client cost as can be.

#![allow(dead_code)] // Each benchmark uses part of this.

use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

/// Where a server announces `address=<host:port>` once it listens.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Announces {
    OnStderr,
    OnStdout,
}

/// Spawns `command` and waits for its `address=` line; the rest of that output is drained in
/// the background so the server never blocks on a full pipe. The child dies with its handle.
pub(crate) async fn spawn_listening(
    command: &mut tokio::process::Command,
    announces: Announces,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let mut child = match announces {
        Announces::OnStderr => command.stderr(Stdio::piped()).stdout(Stdio::null()),
        Announces::OnStdout => command.stdout(Stdio::piped()).stderr(Stdio::inherit()),
    }
    .kill_on_drop(true)
    .spawn()?;
    let output: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match announces {
        Announces::OnStderr => Box::new(child.stderr.take().context("stderr")?),
        Announces::OnStdout => Box::new(child.stdout.take().context("stdout")?),
    };
    let mut lines = BufReader::new(output).lines();
    loop {
        let line = lines
            .next_line()
            .await?
            .context("the server exited before listening")?;
        if let Some((_, rest)) = line.split_once("address=") {
            let address = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((child, address));
        }
    }
}

/// `mcp-tasks serve` on a free loopback port with `args`.
pub(crate) async fn spawn_serve(
    bin: &str,
    args: &[&str],
) -> anyhow::Result<(tokio::process::Child, String)> {
    spawn_listening(
        tokio::process::Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("MCP_TASKS_LOG", "info"),
        Announces::OnStderr,
    )
    .await
}

/// A keep-alive HTTP/1.1 connection that understands `Content-Length` and chunked bodies.
pub(crate) struct Connection {
    stream: BufReader<TcpStream>,
    /// What a Server-Sent Events body has delivered beyond the last event returned.
    events: String,
}

impl Connection {
    pub(crate) async fn open(address: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
            events: String::new(),
        })
    }

    /// Opens an MCP session; its id.
    pub(crate) async fn initialize(&mut self) -> anyhow::Result<String> {
        let hello = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
        let (headers, _) = self.exchange("/mcp", None, hello).await?;
        let session = headers
            .iter()
            .find(|(name, _)| name == "mcp-session-id")
            .map(|(_, value)| value.clone())
            .context("no mcp-session-id")?;
        self.exchange(
            "/mcp",
            Some(&session),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        )
        .await?;
        Ok(session)
    }

    pub(crate) async fn request(
        &mut self,
        path: &str,
        session: Option<&str>,
        body: &str,
    ) -> anyhow::Result<String> {
        Ok(self.exchange(path, session, body).await?.1)
    }

    pub(crate) async fn exchange(
        &mut self,
        path: &str,
        session: Option<&str>,
        body: &str,
    ) -> anyhow::Result<(Vec<(String, String)>, String)> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(session) = session {
            request.push_str(&format!(
                "Mcp-Session-Id: {session}\r\nMcp-Protocol-Version: 2025-11-25\r\n"
            ));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.stream.get_mut().write_all(request.as_bytes()).await?;

        let headers = self.read_head(path, &[" 200 ", " 201 ", " 202 "]).await?;
        let body = self.read_body(&headers).await?;
        Ok((headers, body))
    }
}

impl Connection {
    /// `GET path`; the body.
    pub(crate) async fn get(&mut self, path: &str) -> anyhow::Result<String> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let headers = self.read_head(path, &[" 200 "]).await?;
        self.read_body(&headers).await
    }

    /// `GET path` of a Server-Sent Events stream; read it with [`Connection::next_event`].
    pub(crate) async fn open_stream(&mut self, path: &str) -> anyhow::Result<()> {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let headers = self.read_head(path, &[" 200 "]).await?;
        if !headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
        {
            bail!("{path}: not a chunked event stream");
        }
        Ok(())
    }

    /// The next event of the stream (its lines, without the blank line that ends it).
    pub(crate) async fn next_event(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some(end) = self.events.find("\n\n") {
                let event: String = self.events.drain(..end + 2).collect();
                return Ok(event.trim_end().to_owned());
            }
            let mut size = String::new();
            self.stream.read_line(&mut size).await?;
            let size = usize::from_str_radix(size.trim(), 16)?;
            if size == 0 {
                bail!("the event stream ended");
            }
            let mut chunk = vec![0; size + 2];
            self.stream.read_exact(&mut chunk).await?;
            self.events
                .push_str(&String::from_utf8_lossy(&chunk[..size]));
        }
    }

    async fn read_head(
        &mut self,
        path: &str,
        statuses: &[&str],
    ) -> anyhow::Result<Vec<(String, String)>> {
        let mut status = String::new();
        self.stream.read_line(&mut status).await?;
        if !statuses.iter().any(|s| status.contains(s)) {
            bail!("{path}: {status}");
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                return Ok(headers);
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_lowercase(), value.trim().to_owned()));
            }
        }
    }

    async fn read_body(&mut self, headers: &[(String, String)]) -> anyhow::Result<String> {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let mut body = Vec::new();
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                self.stream.read_line(&mut size).await?;
                let size = usize::from_str_radix(size.trim(), 16)?;
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = header("content-length") {
            let mut chunk = vec![0; length.parse()?];
            self.stream.read_exact(&mut chunk).await?;
            body = chunk;
        }
        Ok(String::from_utf8(body)?)
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat` (Linux; `None`
/// elsewhere). `pid` `None` is this process. Ticks are taken as 1/100 s, the Linux default.
pub(crate) fn cpu_time(pid: Option<u32>) -> Option<std::time::Duration> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |p| format!("/proc/{p}/stat"),
    );
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(std::time::Duration::from_millis((utime + stime) * 10))
}
