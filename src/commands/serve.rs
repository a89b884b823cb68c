//! `swarmctl serve` and `swarmctl probe`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use crate::cli::ProbeArgs;
use crate::serve::{ServeOptions, Server};

/// Binds, says where it listens (one line on stdout), serves until a signal, drains.
pub async fn run(opts: &ServeOptions) -> anyhow::Result<ExitCode> {
    let server = Server::bind(opts).await?;
    let listening: Vec<String> = server.addrs().iter().map(|(flag, addr)| format!("{flag} {addr}")).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "serving {}", listening.join(" ")).context("cannot write to stdout")?;
    drop(out);
    let shutdown = crate::shutdown::on_signals();
    server.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// GETs a URL and succeeds on a 2xx answer: the healthcheck of the `builtin` image, which has
/// no curl.
pub async fn probe(args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    let uri: hyper::Uri = args.url.parse().with_context(|| format!("invalid URL `{}`", args.url))?;
    if uri.scheme_str() != Some("http") {
        bail!("probe speaks plain http:// only (got `{}`)", args.url);
    }
    let host = uri.host().context("the URL needs a host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("cannot connect to {host}:{port}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::get(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .body(Empty::<Bytes>::new())?;
        let res = sender.send_request(req).await?;
        anyhow::Ok(res.status())
    };
    let status = tokio::time::timeout(args.timeout.0.max(Duration::from_millis(1)), attempt)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {} within {}", args.url, args.timeout))??;
    if status.is_success() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{} answered {status}", args.url)
    }
}
