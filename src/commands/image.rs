//! `swarmctl image pack`.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{Cli, ImageCommand, PackArgs};
use crate::engine::{self, Engine};
use crate::exit::UsageError;
use crate::image;

/// Runs an `image` subcommand.
pub async fn run(cli: &Cli, cmd: &ImageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Pack(args) => pack(cli, args).await,
    }
}

async fn pack(cli: &Cli, args: &PackArgs) -> anyhow::Result<ExitCode> {
    let engine = engine::connect().await?;
    let progress = crate::progress::stderr(cli.quiet);
    if args.self_ && args.push {
        let registry = cli.source().config()?.registry;
        if registry.is_empty() {
            return Err(UsageError::flag(
                "--push",
                "the builtin image goes to the stack's registry, and it has none: add --set registry=HOST:PORT",
            )
            .into());
        }
        let reference = crate::deploy::builtin_image(&engine, &registry, progress.as_ref()).await?;
        println!("{reference}");
        return Ok(ExitCode::SUCCESS);
    }
    let id = if args.self_ {
        let tag = image::builtin_tag()?;
        progress.begin("pack", &format!("packing {tag}"), 0, "");
        let id = crate::deploy::pack_self(&engine, &tag).await;
        progress.end("pack", &format!("built {tag}"));
        id?
    } else {
        let binary = args.binary.clone().expect("clap requires it without --self");
        let entry = match &args.entrypoint {
            Some(e) => e.clone(),
            None => binary.file_name().context("the binary path has no file name")?.to_string_lossy().into_owned(),
        };
        let mut contents = image::inspect(&binary, &entry)?;
        if !contents.is_static() {
            eprintln!(
                "{} is dynamic: adding {} libraries and its interpreter",
                binary.display(),
                contents.libraries.len() - 1
            );
        }
        let own = contents.libraries.len();
        for (file, library) in image::add(&mut contents, args.add.clone())? {
            eprintln!(
                "note: {} needs {library}, which this machine lacks: packed, but it will not load",
                file.display()
            );
        }
        if !args.add.is_empty() {
            eprintln!("the added files need {} more libraries", contents.libraries.len() - own);
        }
        progress.begin("pack", &format!("packing {}", args.tags.join(", ")), 0, "");
        let id = engine.build_image(&contents, &args.tags, &[]).await;
        progress.end("pack", &format!("built {}", args.tags.join(", ")));
        let id = id?;
        if args.push {
            for tag in &args.tags {
                let login = crate::deploy::login_for(tag).await?;
                progress.begin("push", &format!("pushing {tag}"), 0, "");
                let pushed = engine.push_image(tag, login).await;
                progress.end("push", &format!("pushed {tag}"));
                pushed.with_context(|| {
                    format!("cannot push {tag}: does its registry answer, and does this engine trust it?")
                })?;
            }
        }
        id
    };
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}
