//! Containers swarmctl starts for itself: a load client inside the stack's overlay network
//! (the host cannot route to task addresses).

use std::collections::BTreeMap;

/// Label on every container swarmctl starts, with the stack's name (`netem` on the network
/// phase's helpers, which live for one call).
pub const LABEL: &str = "swarmctl.oneoff";

/// A container to run once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Image (its entrypoint runs).
    pub image: String,
    /// Arguments after the entrypoint.
    pub args: Vec<String>,
    /// The network it joins (attachable overlay).
    pub network: String,
    /// Host folder mounted at `/out`.
    pub out_dir: std::path::PathBuf,
    /// Open-file limit (soft and hard).
    pub nofile: i64,
    /// Kernel settings of its own network namespace.
    pub sysctls: BTreeMap<String, String>,
    /// The stack it belongs to (labelled, so that it can be found and removed).
    pub stack: String,
}
