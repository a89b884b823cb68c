//! Plan: what `up` must do, decided without touching the engine. `diff` compares the desired
//! stack with what the engine has; `topology` checks that the swarm's nodes can hold it at
//! all, so that impossible placements are said before deploying, not found as stuck tasks;
//! `load` does the same for the load tasks of `--via swarm`.

mod diff;
pub mod load;
pub mod topology;

pub use diff::*;
