//! Gathers what a run ran on (`report::RunContext`): this machine from /proc, the swarm and
//! the stack as deployed through the engine seam. Best effort: a fact that cannot be read is
//! left empty, never guessed, and never stops a run.

use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::report::{masked, MachineContext, NodeContext, RunContext, StackContext};

/// swarmctl, the command line and this machine: the context of any run.
pub fn local() -> RunContext {
    RunContext {
        swarmctl: env!("CARGO_PKG_VERSION").into(),
        commit: env!("SWARMCTL_COMMIT").into(),
        // The program by its name: where it was installed says nothing of the run.
        command: masked(std::env::args().enumerate().map(|(i, a)| match i {
            0 => std::path::Path::new(&a).file_name().map_or(a.clone(), |n| n.to_string_lossy().into_owned()),
            _ => a,
        })),
        stack: None,
        nodes: Vec::new(),
        client: machine(),
    }
}

/// The context of a run on a deployed stack: `local()` with the swarm's nodes and the stack.
pub async fn of_stack(engine: &dyn Engine, stack: &str, server_service: &str) -> RunContext {
    let mut ctx = local();
    if let Ok(nodes) = engine.nodes().await {
        ctx.nodes = nodes
            .into_iter()
            .map(|n| NodeContext {
                hostname: n.hostname,
                role: n.role,
                engine: n.engine,
                cores: n.nano_cpus as f64 / 1e9,
                memory_bytes: n.memory_bytes.max(0) as u64,
            })
            .collect();
    }
    let hash = match engine.observe(stack).await {
        Ok(observed) => {
            let mut specs: Vec<String> = observed
                .services
                .iter()
                .map(|s| format!("{}={}", s.name, s.spec_hash.as_deref().unwrap_or("-")))
                .collect();
            specs.sort();
            Sha256::digest(specs.join("\n").as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
        }
        Err(_) => String::new(),
    };
    if let Ok(server) = engine.service(server_service).await {
        // A spec that pins a digest names its image exactly; a local tag is named by its ID.
        let id = match server.image.split_once('@') {
            Some((_, digest)) => digest.to_string(),
            None => engine.image_id(&server.image).await.ok().flatten().unwrap_or_default(),
        };
        ctx.stack = Some(StackContext {
            name: stack.into(),
            hash,
            server_image: server.image.split('@').next().unwrap_or_default().into(),
            server_image_id: id,
            replicas: server.replicas,
        });
    }
    ctx
}

/// This machine: hostname, cores this process may use, memory, kernel.
pub fn machine() -> MachineContext {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
    let memory_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    MachineContext {
        hostname: read("/proc/sys/kernel/hostname"),
        cores: std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(0),
        memory_bytes: memory_kib * 1024,
        kernel: read("/proc/sys/kernel/osrelease"),
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{fake::Fake, Engine};

    #[tokio::test]
    async fn a_deployed_stack_is_named_with_its_image_replicas_and_nodes() {
        let m = super::machine();
        assert!(m.cores >= 1 && m.memory_bytes > 0 && !m.kernel.is_empty(), "{m:?}");
        let fake = Fake::swarm(2);
        let none = super::of_stack(&fake, "nothing", "nothing_server").await;
        assert!(none.stack.is_none(), "no service, no stack: {none:?}");
        assert_eq!(none.nodes.len(), 3);
        assert_eq!((none.nodes[1].hostname.as_str(), none.nodes[1].engine.as_str()), ("worker1", "20.10.24"));
        assert_eq!(none.nodes[0].cores, 2.0);
        fake.add_image("swarmctl/mcp-server:local");
        let spec = bollard::models::ServiceSpec {
            name: Some("s_server".into()),
            labels: Some([("com.docker.stack.namespace".to_string(), "s".to_string())].into()),
            task_template: Some(bollard::models::TaskSpec {
                container_spec: Some(bollard::models::TaskSpecContainerSpec {
                    image: Some("swarmctl/mcp-server:local".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(bollard::models::ServiceSpecMode {
                replicated: Some(bollard::models::ServiceSpecModeReplicated { replicas: Some(3) }),
                ..Default::default()
            }),
            ..Default::default()
        };
        fake.create_service(spec, None).await.unwrap();
        let ctx = super::of_stack(&fake, "s", "s_server").await;
        let stack = ctx.stack.expect("the stack");
        assert_eq!((stack.server_image.as_str(), stack.replicas), ("swarmctl/mcp-server:local", 3));
        assert!(stack.server_image_id.starts_with("sha256:"), "{stack:?}");
        assert_eq!(stack.hash.len(), 16);
    }
}
