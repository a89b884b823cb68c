//! Registry credentials where `docker login` keeps them (the docker CLI's config file and its
//! credential helpers): for pushing images, and, when a stack asks (`with_registry_auth`), for
//! the swarm's nodes to pull them, as `docker stack deploy --with-registry-auth` does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use serde::Deserialize;

/// Docker Hub's key in the config file (what `docker login` without a server writes).
const HUB_KEY: &str = "https://index.docker.io/v1/";

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The config file exists but could not be read or parsed.
    #[error("cannot read the docker config {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A credential helper failed (other than having nothing for the registry).
    #[error("the credential helper docker-credential-{helper} failed for {registry}: {message}")]
    Helper {
        /// Its name (`docker-credential-<helper>`).
        helper: String,
        /// The registry asked for.
        registry: String,
        /// What it said, or why it could not be run.
        message: String,
    },
}

/// The registry an image reference is pulled from, as the docker CLI decides it: the first
/// path component when it has a `.` or `:` or is `localhost`, else Docker Hub (`docker.io`).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// The docker CLI's config file, as far as credentials go.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Where credentials are looked up.
#[derive(Debug, Default)]
pub struct Store {
    path: PathBuf,
    file: ConfigFile,
}

impl Store {
    /// The config the docker CLI would use: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`; none at all is an empty store.
    pub fn load() -> Result<Store, CredentialsError> {
        let dir = match std::env::var_os("DOCKER_CONFIG") {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".docker"),
        };
        Store::from_file(&dir.join("config.json"))
    }

    /// The config at `path`; a missing file is an empty store.
    pub fn from_file(path: &Path) -> Result<Store, CredentialsError> {
        let fail = |message: String| CredentialsError::Config { path: path.to_path_buf(), message };
        let file = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => return Err(fail(e.to_string())),
        };
        Ok(Store { path: path.to_path_buf(), file })
    }

    /// The file this store was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials kept for `registry` (`host[:port]`, or `docker.io`), as the docker CLI
    /// looks: the helper named for it, else the default helper, else the file's own entry;
    /// `None` when nothing is kept (the registry is then asked anonymously). With a default
    /// helper, `docker login` leaves only an empty entry in the file: the helper has the login.
    pub async fn get(&self, registry: &str) -> Result<Option<DockerCredentials>, CredentialsError> {
        let server = if registry == "docker.io" { HUB_KEY } else { registry };
        if let Some(helper) = self.file.cred_helpers.get(registry).or(self.file.creds_store.as_ref()) {
            return ask_helper(helper, server, registry).await;
        }
        let kept = self.file.auths.iter().find(|(k, _)| host_of(k) == host_of(server));
        Ok(kept.and_then(|(_, e)| entry(e, server)))
    }
}

/// A config key's registry, without scheme or API path (`https://host/v1/` is `host`), Docker
/// Hub's aliases as one.
fn host_of(key: &str) -> &str {
    let host = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io",
        h => h,
    }
}

/// A config entry as the Engine API takes it: `auth` is base64 of `user:password`.
fn entry(e: &Entry, server: &str) -> Option<DockerCredentials> {
    use base64::Engine as _;
    let (mut username, mut password) = (e.username.clone(), e.password.clone());
    if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).ok()?;
        let (u, p) = String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))?;
        (username, password) = (Some(u), Some(p));
    }
    let identitytoken = e.identitytoken.clone().filter(|t| !t.is_empty());
    if username.is_none() && identitytoken.is_none() {
        return None;
    }
    Some(DockerCredentials {
        username,
        password,
        identitytoken,
        serveraddress: Some(server.into()),
        ..Default::default()
    })
}

/// What a credential helper answers to `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the server on stdin, as the docker CLI does;
/// bounded, since a helper may wait for a keychain to be unlocked.
async fn ask_helper(helper: &str, server: &str, registry: &str) -> Result<Option<DockerCredentials>, CredentialsError> {
    use tokio::io::AsyncWriteExt;
    let fail = |message: String| CredentialsError::Helper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        message,
    };
    let program = format!("docker-credential-{helper}");
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run {program} ({e}); is it installed and on PATH?")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(server.as_bytes()).await.map_err(|e| fail(e.to_string()))?;
    }
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .map_err(|_| fail("no answer within 15 s".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        if said.contains("credentials not found") {
            return Ok(None);
        }
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(fail(if said.is_empty() { err } else { said }));
    }
    let answer: HelperAnswer = serde_json::from_str(&said).map_err(|e| fail(format!("unreadable answer: {e}")))?;
    // A helper that keeps an identity token says so with this user name.
    Ok(Some(if answer.username == "<token>" {
        DockerCredentials {
            identitytoken: Some(answer.secret),
            serveraddress: Some(server.into()),
            ..Default::default()
        }
    } else {
        DockerCredentials {
            username: Some(answer.username),
            password: Some(answer.secret),
            serveraddress: Some(server.into()),
            ..Default::default()
        }
    }))
}

/// The credentials of each registry among `images` that has some kept: what a deploy with
/// `with_registry_auth` hands the swarm, by registry.
pub async fn for_images(
    store: &Store,
    images: impl IntoIterator<Item = &str>,
) -> Result<BTreeMap<String, DockerCredentials>, CredentialsError> {
    let mut out = BTreeMap::new();
    for image in images {
        let registry = registry_of(image);
        if out.contains_key(registry) {
            continue;
        }
        if let Some(c) = store.get(registry).await? {
            out.insert(registry.to_string(), c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(json: &str) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        let s = Store::from_file(&path).unwrap();
        (dir, s)
    }

    #[test]
    fn registries_are_told_apart_as_the_docker_cli_does() {
        for (image, registry) in [
            ("traefik:v3.1", "docker.io"),
            ("prom/prometheus:v2", "docker.io"),
            ("10.99.0.1:5000/swarmctl/mcp-server:0.1.0", "10.99.0.1:5000"),
            ("registry.example.com/team/erlmcp", "registry.example.com"),
            ("localhost/x", "localhost"),
            ("ghcr.io/org/img@sha256:abc", "ghcr.io"),
        ] {
            assert_eq!(registry_of(image), registry, "{image}");
        }
    }

    #[tokio::test]
    async fn a_login_entry_is_found_by_its_host_and_decoded() {
        let (_d, s) = store(
            r#"{"auths": {
                "10.99.0.1:5000": {"auth": "c3dhcm1jdGw6czNjcmV0OndpdGg6Y29sb25z"},
                "https://index.docker.io/v1/": {"auth": "aHViOnB3"},
                "https://ghcr.io": {"identitytoken": "tok"}
            }}"#,
        );
        let c = s.get("10.99.0.1:5000").await.unwrap().unwrap();
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref(), c.serveraddress.as_deref()),
            (Some("swarmctl"), Some("s3cret:with:colons"), Some("10.99.0.1:5000"))
        );
        let hub = s.get(registry_of("traefik:v3.1")).await.unwrap().unwrap();
        assert_eq!((hub.username.as_deref(), hub.serveraddress.as_deref()), (Some("hub"), Some(HUB_KEY)));
        assert_eq!(s.get("ghcr.io").await.unwrap().unwrap().identitytoken.as_deref(), Some("tok"));
        assert!(s.get("10.99.0.1:5001").await.unwrap().is_none(), "another port is another registry");
    }

    #[tokio::test]
    async fn no_config_is_no_credentials_and_a_broken_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let none = Store::from_file(&dir.path().join("config.json")).unwrap();
        assert!(none.get("docker.io").await.unwrap().is_none());
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{ not json").unwrap();
        let err = Store::from_file(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    #[tokio::test]
    async fn helpers_are_asked_with_the_server_on_stdin() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // A helper that knows one server, and says what the real ones say for the others.
        let helper = dir.path().join("docker-credential-test");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread s\n[ \"$1\" = get ] || exit 2\nif [ \"$s\" = reg.example:443 ]; then\n\
             printf '{\"ServerURL\":\"%s\",\"Username\":\"u\",\"Secret\":\"p\"}' \"$s\"\n\
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
        // Only this test changes PATH, and only by putting a folder in front.
        std::env::set_var("PATH", path);
        // As `docker login` leaves it with a default helper: an empty entry, the login in the helper.
        let (_d, s) = store(
            r#"{"auths": {"reg.example:443": {}}, "credsStore": "test", "credHelpers": {"other.example": "absent"}}"#,
        );
        let c = s.get("reg.example:443").await.unwrap().unwrap();
        assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("u"), Some("p")));
        assert!(s.get("docker.io").await.unwrap().is_none(), "nothing kept is no credentials, not an error");
        let err = s.get("other.example").await.unwrap_err().to_string();
        assert!(err.contains("docker-credential-absent") && err.contains("PATH"), "{err}");
        let found = for_images(&s, ["reg.example:443/a:1", "reg.example:443/b:2", "traefik:v3"]).await.unwrap();
        assert_eq!(found.keys().collect::<Vec<_>>(), ["reg.example:443"]);
    }
}
