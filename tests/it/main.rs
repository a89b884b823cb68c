//! swarmctl's integration tests, in one binary (one link, shared helpers).
//!
//! - `snapshots`: every built-in stack rendered and converted, pinned with insta.
//! - `cli`: the real binary: exit codes, error messages, files written.
//! - `engine`: a real Docker Engine (started by `scripts/dev-env`): bollard, and the docker CLI
//!   accepting and deploying what swarmctl renders.
//! - `monitoring`: promtool on the rendered rules; the real Prometheus against a real stack.
//! - `deploy`, `phases`: `up`/`down` and `test`/`validate` against that engine with the real
//!   Traefik and Prometheus images (one at a time: `util::exclusive`).
//! - `python_sdk`: the official MCP Python SDK's server deployed, tested and failed over.
//! - `haproxy`: the stack behind HAProxy (`lb.kind: haproxy`): sessions pinned, failover,
//!   monitoring.
//! - `remote`: the engine reached over `tcp://` with mutual TLS and over `ssh://`.
//! - `cluster`: a real three-node swarm on this machine (`scripts/dev-cluster`), `#[ignore]`d
//!   unless asked for (`scripts/test` does).

mod cli;
mod cluster;
mod deploy;
mod engine;
mod haproxy;
mod load;
mod monitoring;
mod phases;
mod python_sdk;
mod remote;
mod serve;
mod snapshots;
mod util;
