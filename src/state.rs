//! Files swarmctl keeps between runs, under `$SWARMCTL_STATE_DIR`, else
//! `$XDG_STATE_HOME/swarmctl`, else `~/.local/state/swarmctl`: today, generated secrets, which
//! must stay the same from one `up` to the next (a new value would roll the services over).

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::Context;
use base64::Engine as _;

/// The state folder.
pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SWARMCTL_STATE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("swarmctl");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/swarmctl")
}

/// The Grafana admin password of `stack`: read from the state folder, or generated (24
/// random characters from /dev/urandom) and stored there with mode 0600 on first use.
pub fn grafana_admin_password(stack: &str) -> anyhow::Result<String> {
    let path = dir().join(stack).join("grafana_admin_password");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let mut bytes = [0u8; 18];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom to generate the Grafana admin password")?;
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let parent = path.parent().expect("state path has a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create the state folder {}", parent.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, password.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(path = %path.display(), "generated the Grafana admin password");
    Ok(password)
}
