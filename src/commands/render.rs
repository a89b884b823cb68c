//! `swarmctl render`: print or write the rendered stack.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{Cli, RenderArgs};
use crate::convert::{self, Namespace};
use crate::render::{self, Inputs, Rendered};
use crate::state;

/// Renders the selected stack; checks it converts; prints or writes it.
pub fn run(cli: &Cli, args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let source = cli.source();
    let config = source.config()?;
    let templates = source.templates()?;
    let grafana_admin_password =
        if config.grafana.enabled { Some(state::grafana_admin_password(&config.name)?) } else { None };
    let inputs = Inputs { version: env!("CARGO_PKG_VERSION").into(), grafana_admin_password, builtin_image: None };
    let rendered = render::render(&config, &templates, &inputs)?;
    check_converts(&config.name, &rendered)?;

    match &args.out {
        None => {
            std::io::stdout().write_all(rendered.stack_yml.as_bytes()).context("cannot write to stdout")?;
        }
        Some(dir) => {
            let written = render::write_to(&rendered, dir)
                .with_context(|| format!("cannot write the stack into {}", dir.display()))?;
            let mut out = std::io::stdout().lock();
            for path in written {
                writeln!(out, "{}", path.display()).context("cannot write to stdout")?;
            }
            tracing::info!("deploy with: docker stack deploy -c {}/stack.yml {}", dir.display(), config.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A rendered stack is only handed out if it also converts to swarm specs.
pub(crate) fn check_converts(name: &str, rendered: &Rendered) -> anyhow::Result<convert::DesiredStack> {
    let files: BTreeMap<String, String> = rendered.files.iter().map(|(k, v)| (k.clone(), v.content.clone())).collect();
    Ok(convert::convert_stack(&Namespace(name.to_string()), &rendered.compose, &files)?)
}
