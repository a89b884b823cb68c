//! Helpers shared by the integration tests.

use std::path::Path;
use std::process::{Command, Output};

use swarmctl::config;
use swarmctl::render::{self, Inputs, Rendered, Templates};

/// Fixed inputs so that rendered output (and the hashes in config names) is reproducible.
pub fn fixed_inputs() -> Inputs {
    Inputs {
        version: "0.0.0-test".into(),
        grafana_admin_password: Some("test-password".into()),
    }
}

/// Renders a built-in stack with fixed inputs.
pub fn render_builtin(stack: &str) -> (config::Config, Rendered) {
    let config = config::load(Some(stack), &[]).unwrap_or_else(|e| panic!("{stack}: {e}"));
    let rendered = render::render(&config, &Templates::embedded().unwrap(), &fixed_inputs())
        .unwrap_or_else(|e| panic!("{stack}: {e}"));
    (config, rendered)
}

/// Runs the swarmctl binary with a private state folder.
pub fn swarmctl(args: &[&str], state: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(args)
        .env("SWARMCTL_STATE_DIR", state)
        .env_remove("SWARMCTL_STACK")
        .env_remove("RUST_LOG")
        .output()
        .expect("run swarmctl")
}

/// stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
