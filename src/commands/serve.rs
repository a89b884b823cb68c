//! `swarmctl serve` and `swarmctl probe`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cli::ProbeArgs;
use crate::serve::{ServeOptions, Server};

/// Binds, says where it listens (one line on stdout), serves until a signal, drains.
pub async fn run(opts: &ServeOptions) -> anyhow::Result<ExitCode> {
    let server = Server::bind(opts).await?;
    // Before the line: whoever reads it may signal at once.
    let shutdown = crate::shutdown::on_signals();
    let listening: Vec<String> = server.addrs().iter().map(|(flag, addr)| format!("{flag} {addr}")).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "serving {}", listening.join(" ")).context("cannot write to stdout")?;
    drop(out);
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
    let host = uri.host().context("the URL needs a host")?;
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let (status, _) = crate::phase::prom::get(host, port, path, args.timeout.0.max(Duration::from_millis(1)))
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", args.url, crate::error_text(&e)))?;
    if (200..300).contains(&status) {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{} answered {status}", args.url)
    }
}
