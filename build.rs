//! Records the git commit swarmctl is built from, for `--version` and every results.json: a
//! figure is only reproducible with the code that measured it.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SWARMCTL_COMMIT={commit}");
    // A new commit moves HEAD's branch: rebuild then, and only then.
    let git = |what: &str| {
        Command::new("git")
            .args(["rev-parse", what])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // HEAD moves on a checkout, the branches' folder on a commit (cargo scans a folder for any
    // change; a packed branch is written loose again by its next commit). In a worktree, HEAD
    // is its own and the branches are the common directory's.
    if let (Some(dir), Some(common)) = (git("--git-dir"), git("--git-common-dir")) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if std::path::Path::new(&format!("{common}/refs/heads")).is_dir() {
            println!("cargo:rerun-if-changed={common}/refs/heads");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
