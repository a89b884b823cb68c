//! `swarmctl image pack`.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{ImageCommand, PackArgs};
use crate::engine::{self, Engine};
use crate::image;

/// Runs an `image` subcommand.
pub async fn run(cmd: &ImageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Pack(args) => pack(args).await,
    }
}

async fn pack(args: &PackArgs) -> anyhow::Result<ExitCode> {
    let engine = engine::connect().await?;
    let id = if args.self_ {
        let tag = image::builtin_tag()?;
        let id = crate::deploy::pack_self(&engine, &tag).await?;
        eprintln!("built {tag}");
        id
    } else {
        let binary = args.binary.clone().expect("clap requires it without --self");
        let entry = match &args.entrypoint {
            Some(e) => e.clone(),
            None => binary.file_name().context("the binary path has no file name")?.to_string_lossy().into_owned(),
        };
        let contents = image::inspect(&binary, &entry)?;
        if !contents.is_static() {
            eprintln!(
                "{} is dynamic: adding {} libraries and its interpreter",
                binary.display(),
                contents.libraries.len()
            );
        }
        let id = engine.build_image(&contents, &args.tags, &[]).await?;
        eprintln!("built {}", args.tags.join(", "));
        id
    };
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}
