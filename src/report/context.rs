//! What a run ran on (swarmctl and its commit, the command, the stack as deployed, the swarm's
//! nodes, the client machine): written in every results.json, shown at the top of every
//! report, and the first thing `report compare` says when two runs differ in it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The run's context.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunContext {
    /// swarmctl's version.
    pub swarmctl: String,
    /// The git commit swarmctl was built from (`unknown` when built outside a checkout).
    pub commit: String,
    /// The command line, with the values of secret-looking `--set` keys masked.
    pub command: Vec<String>,
    /// The stack, when the run had one (not for `load` against a URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<StackContext>,
    /// The swarm's nodes, when the run had a swarm.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeContext>,
    /// The machine the load came from.
    pub client: MachineContext,
}

/// The stack as deployed when the run began.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StackContext {
    /// Its name.
    pub name: String,
    /// A hash of its deployed service specs (the same stack deployed the same way has the
    /// same hash).
    pub hash: String,
    /// The server service's image, as its spec names it.
    pub server_image: String,
    /// That image's ID on this engine, or the digest the spec pins.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_image_id: String,
    /// Server replicas the service was set to.
    pub replicas: u64,
}

/// One node of the swarm.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeContext {
    /// Its hostname.
    pub hostname: String,
    /// `manager` or `worker`.
    pub role: String,
    /// Its Docker Engine's version.
    pub engine: String,
    /// CPUs the node offers the swarm.
    pub cores: f64,
    /// Memory, bytes.
    pub memory_bytes: u64,
}

/// The client machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MachineContext {
    /// Its hostname.
    pub hostname: String,
    /// CPUs this process may use.
    pub cores: u64,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// The kernel's release.
    pub kernel: String,
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

impl NodeContext {
    fn describe(&self) -> String {
        format!(
            "{} ({}, engine {}, {} cores, {})",
            self.hostname,
            self.role,
            self.engine,
            self.cores,
            gib(self.memory_bytes)
        )
    }
}

impl MachineContext {
    fn describe(&self) -> String {
        format!("{}: {} cores, {}, kernel {}", self.hostname, self.cores, gib(self.memory_bytes), self.kernel)
    }
}

impl RunContext {
    /// Rows for a report: what, and its value.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![("swarmctl", format!("{} (commit {})", self.swarmctl, self.commit))];
        if let Some(s) = &self.stack {
            rows.push(("stack", format!("{} (deployed specs {})", s.name, s.hash)));
            let id =
                if s.server_image_id.is_empty() { String::new() } else { format!(" ({})", short(&s.server_image_id)) };
            rows.push(("server", format!("{} replicas of {}{id}", s.replicas, s.server_image)));
        }
        if !self.nodes.is_empty() {
            let nodes = self.nodes.iter().map(NodeContext::describe).collect::<Vec<_>>().join("; ");
            rows.push(("nodes", format!("{}: {nodes}", self.nodes.len())));
        }
        rows.push(("client", self.client.describe()));
        rows.push(("command", self.command.join(" ")));
        rows
    }

    /// What differs from `other` (this is A, `other` B), what most changes the figures first:
    /// the replicas and image, then the stack, the nodes, the client, swarmctl, the command.
    pub fn differences(&self, other: &RunContext) -> Vec<String> {
        let mut out = Vec::new();
        let mut differ = |what: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{what}: {a} → {b}"));
            }
        };
        let stack =
            |c: &RunContext, f: fn(&StackContext) -> String| c.stack.as_ref().map(f).unwrap_or_else(|| "none".into());
        differ("server replicas", stack(self, |s| s.replicas.to_string()), stack(other, |s| s.replicas.to_string()));
        differ("server image", stack(self, |s| s.server_image.clone()), stack(other, |s| s.server_image.clone()));
        differ(
            "server image ID",
            stack(self, |s| short(&s.server_image_id)),
            stack(other, |s| short(&s.server_image_id)),
        );
        differ("stack", stack(self, |s| s.name.clone()), stack(other, |s| s.name.clone()));
        differ("deployed specs", stack(self, |s| s.hash.clone()), stack(other, |s| s.hash.clone()));
        let nodes = |c: &RunContext| c.nodes.iter().map(NodeContext::describe).collect::<Vec<_>>().join("; ");
        differ("nodes", format!("{}", self.nodes.len()), format!("{}", other.nodes.len()));
        if self.nodes.len() == other.nodes.len() {
            differ("node details", nodes(self), nodes(other));
        }
        differ("client", self.client.describe(), other.client.describe());
        differ(
            "swarmctl",
            format!("{} {}", self.swarmctl, self.commit),
            format!("{} {}", other.swarmctl, other.commit),
        );
        differ("command", self.command.join(" "), other.command.join(" "));
        out
    }
}

/// An image ID or digest without its algorithm, 12 characters as docker prints it.
fn short(id: &str) -> String {
    id.rsplit(':').next().unwrap_or(id).chars().take(12).collect()
}

/// The command line with what may be secret masked: results folders get shared, and registry
/// passwords, bearer tokens and URL credentials must not travel with them. Masked: the values
/// of `--set` keys naming a password, token, secret, key, credential or auth; every `--header`
/// value (its name stays); the user and password of a URL.
pub fn masked(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let secret_key = |kv: &str| {
        let key = kv.split('=').next().unwrap_or("").to_ascii_lowercase();
        ["password", "token", "secret", "key", "credential", "auth"].iter().any(|w| key.contains(w))
    };
    let set = |kv: &str| match secret_key(kv) {
        true => format!("{}=***", kv.split('=').next().unwrap_or("")),
        false => kv.to_string(),
    };
    let header = |h: &str| format!("{}: ***", h.split(':').next().unwrap_or("").trim());
    let mut out: Vec<String> = Vec::new();
    let mut previous = String::new();
    for a in args {
        let masked = if let Some(kv) = a.strip_prefix("--set=") {
            format!("--set={}", set(kv))
        } else if let Some(h) = a.strip_prefix("--header=") {
            format!("--header={}", header(h))
        } else if previous == "--set" {
            set(&a)
        } else if previous == "--header" {
            header(&a)
        } else {
            without_userinfo(&a)
        };
        previous = a;
        out.push(masked);
    }
    out
}

/// `scheme://user:password@host/…` as `scheme://***@host/…`.
fn without_userinfo(arg: &str) -> String {
    let Some((scheme, rest)) = arg.split_once("://") else { return arg.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => arg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn context(replicas: u64) -> RunContext {
        RunContext {
            swarmctl: "0.1.0".into(),
            commit: "0a1ce9b12345".into(),
            command: vec!["swarmctl".into(), "test".into(), "baseline".into()],
            stack: Some(StackContext {
                name: "swarmctl-ci".into(),
                hash: "1f2e3d4c5b6a7988".into(),
                server_image: "swarmctl/mcp-server:0.1.0-abc".into(),
                server_image_id: "sha256:0123456789abcdef0123".into(),
                replicas,
            }),
            nodes: vec![NodeContext {
                hostname: "m0".into(),
                role: "manager".into(),
                engine: "20.10.24".into(),
                cores: 2.0,
                memory_bytes: 4 << 30,
            }],
            client: MachineContext { hostname: "m0".into(), cores: 2, memory_bytes: 4 << 30, kernel: "6.1.0".into() },
        }
    }

    #[test]
    fn the_replica_count_is_the_first_difference_named() {
        let a = context(3);
        assert!(a.differences(&a).is_empty());
        let mut b = context(6);
        b.command.push("--set".into());
        b.stack.as_mut().unwrap().hash = "99".into();
        let d = b.differences(&a);
        assert_eq!(d[0], "server replicas: 6 → 3");
        assert_eq!(d[1], "deployed specs: 99 → 1f2e3d4c5b6a7988");
        assert_eq!(d.len(), 3, "{d:?}");
        let rows = a.rows();
        assert_eq!(rows[2], ("server", "3 replicas of swarmctl/mcp-server:0.1.0-abc (0123456789ab)".to_string()));
        assert_eq!(rows[3].1, "1: m0 (manager, engine 20.10.24, 2 cores, 4.0 GiB)");
    }

    #[test]
    fn secrets_are_masked_in_the_command_line() {
        let args =
            ["swarmctl", "up", "--set", "registry.password=hunter2", "--set=registry.token=t0k", "--set", "name=x"];
        assert_eq!(
            masked(args.map(String::from)),
            ["swarmctl", "up", "--set", "registry.password=***", "--set=registry.token=***", "--set", "name=x"]
        );
        let args = [
            "swarmctl",
            "load",
            "--url",
            "https://bob:s3cret@mcp.example:8443/mcp?a=b@c",
            "--header",
            "Authorization: Bearer abc",
            "--header=X-Api-Key:k",
            "--set",
            "server.environment.API_KEY=z",
        ];
        assert_eq!(
            masked(args.map(String::from)),
            [
                "swarmctl",
                "load",
                "--url",
                "https://***@mcp.example:8443/mcp?a=b@c",
                "--header",
                "Authorization: ***",
                "--header=X-Api-Key: ***",
                "--set",
                "server.environment.API_KEY=***",
            ]
        );
    }
}
