//! Semantic checks of a parsed configuration: values that have the right type but cannot work.
//! Every problem is collected (key, what is valid), not just the first.

use std::collections::BTreeMap;

use super::model::*;

const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];
/// Prefixes of the sysctls that are namespaced per container, so swarm can set them.
const SYSCTL_PREFIXES: &[&str] = &["net.", "kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue."];

/// One semantic problem.
pub(super) struct Violation {
    /// The key whose value is wrong.
    pub key: String,
    /// What is wrong, and what would be valid.
    pub message: String,
    /// For a clash, the other key involved.
    pub related: Option<String>,
}

struct Checker(Vec<Violation>);

impl Checker {
    fn ensure(&mut self, ok: bool, key: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(Violation { key: key.to_string(), message: message(), related: None });
        }
    }

    fn clash(&mut self, key: &str, other: &str, message: String) {
        self.0.push(Violation { key: key.to_string(), message, related: Some(other.to_string()) });
    }
}

/// Returns every problem found in `c`.
pub(super) fn check(c: &Config) -> Vec<Violation> {
    let mut k = Checker(Vec::new());
    let valid_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 32
            && s.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && s.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_')
    };
    k.ensure(valid_name(&c.name), "name", || {
        format!(
            "`{}` is not a valid stack name: use 1 to 32 lowercase letters, digits, `-` or `_`, starting with a letter or digit",
            c.name
        )
    });

    server(&mut k, &c.server, &c.test);
    resources(&mut k, "server.resources", &c.server.resources);

    let s = &c.server;
    k.ensure(c.lb.replicas >= 1, "lb.replicas", || "must be at least 1".into());
    k.ensure(valid_registry(&c.registry), "registry", || {
        format!("`{}` is not a registry address: write host:port (e.g. 10.99.0.1:5000 or registry.example.com), without a scheme or path", c.registry)
    });
    k.ensure(!c.lb.image.is_empty(), "lb.image", || "must name an image".into());
    if c.lb.kind == super::model::LbKind::Haproxy {
        k.ensure(!c.lb.image.contains("traefik"), "lb.image", || {
            format!("`{}` is Traefik, and lb.kind is haproxy: name an HAProxy image (haproxy:2.6, or swarmctl/haproxy:local built by scripts/offline-images haproxy)", c.lb.image)
        });
    }
    k.ensure(c.lb.refresh.0.as_millis() >= 1000 && c.lb.refresh.0.subsec_nanos() == 0, "lb.refresh", || {
        format!("Traefik polls in whole seconds: use 1s or more (got {})", c.lb.refresh)
    });
    k.ensure(c.lb.failure_window.0.as_nanos() > 0, "lb.failure_window", || "must be longer than 0s".into());
    resources(&mut k, "lb.resources", &c.lb.resources);
    placement(&mut k, "lb.placement", &c.lb.placement);
    placement(&mut k, "server.placement", &c.server.placement);

    if c.prometheus.enabled {
        k.ensure(!c.prometheus.image.is_empty(), "prometheus.image", || "must name an image".into());
        for (key, d) in [
            ("prometheus.scrape_interval", c.prometheus.scrape_interval),
            ("prometheus.discovery_refresh", c.prometheus.discovery_refresh),
            ("prometheus.retention", c.prometheus.retention),
        ] {
            k.ensure(d.0.as_millis() >= 1000, key, || format!("must be at least 1s (got {d})"));
        }
        resources(&mut k, "prometheus.resources", &c.prometheus.resources);
    }
    if c.grafana.enabled {
        k.ensure(c.prometheus.enabled, "grafana.enabled", || {
            "Grafana's dashboards read Prometheus: enable prometheus too, or set grafana.enabled: false".into()
        });
        k.ensure(!c.grafana.image.is_empty(), "grafana.image", || "must name an image".into());
        resources(&mut k, "grafana.resources", &c.grafana.resources);
    }

    // Every host-mode published port must be distinct: they share each node's address.
    let mut host_ports: Vec<(&str, u16)> = Vec::new();
    if !c.lb.ports_per_task {
        host_ports.extend([
            ("lb.ports.web", c.lb.ports.web),
            ("lb.ports.websocket", c.lb.ports.websocket),
            ("lb.ports.metrics", c.lb.ports.metrics),
        ]);
        if s.transports.tcp.is_some() {
            host_ports.push(("lb.ports.tcp", c.lb.ports.tcp));
        }
    }
    if c.prometheus.enabled {
        host_ports.push(("prometheus.port", c.prometheus.port));
    }
    if c.grafana.enabled {
        host_ports.push(("grafana.port", c.grafana.port));
    }
    unique_ports(&mut k, &host_ports);

    for (key, net) in [("networks.mcp", &c.networks.mcp), ("networks.monitoring", &c.networks.monitoring)] {
        k.ensure(valid_name(&net.name), &format!("{key}.name"), || {
            format!("`{}` is not a valid network name: use lowercase letters, digits, `-` or `_`", net.name)
        });
    }
    k.ensure(c.networks.mcp.name != c.networks.monitoring.name, "networks.monitoring.name", || {
        format!("must differ from networks.mcp.name (`{}`)", c.networks.mcp.name)
    });

    for required in ["baseline", "stress"] {
        k.ensure(c.test.profiles.contains_key(required), &format!("test.profiles.{required}"), || {
            format!("the `{required}` profile is required (swarmctl test {required} runs it)")
        });
    }

    k.ensure(c.slo.success_ratio > 0.0 && c.slo.success_ratio <= 1.0, "slo.success_ratio", || {
        format!("must be a ratio above 0 and at most 1, e.g. 0.95 for 95 % (got {})", c.slo.success_ratio)
    });
    k.ensure(
        c.slo.failover_success_ratio > 0.0 && c.slo.failover_success_ratio <= 1.0,
        "slo.failover_success_ratio",
        || format!("must be a ratio above 0 and at most 1, e.g. 0.99 for 99 % (got {})", c.slo.failover_success_ratio),
    );
    k.ensure(c.slo.p99.0.as_nanos() > 0, "slo.p99", || "must be longer than 0s, e.g. 500ms".into());
    k.ensure(c.slo.failover_recovery.0.as_nanos() > 0, "slo.failover_recovery", || {
        "must be longer than 0s, e.g. 30s".into()
    });
    k.0
}

fn server(k: &mut Checker, s: &Server, test: &Test) {
    k.ensure(!s.image.is_empty(), "server.image", || "must be `builtin` or an image reference".into());
    k.ensure(s.replicas >= 1, "server.replicas", || {
        format!("must be at least 1 (got {}); use `swarmctl down` to remove the stack", s.replicas)
    });

    // Listeners: HTTP-based transports may share a port when their paths differ; TCP and
    // metrics need a port of their own.
    let t = &s.transports;
    let mut listeners: Vec<(String, u16, Option<&str>)> = Vec::new();
    if let Some(h) = &t.http {
        listeners.push(("server.transports.http.port".into(), h.port, Some(&h.path)));
    }
    if let Some(h) = &t.sse {
        listeners.push(("server.transports.sse.port".into(), h.port, Some(&h.path)));
    }
    if let Some(w) = &t.ws {
        listeners.push(("server.transports.ws.port".into(), w.port, Some(&w.path)));
    }
    if let Some(tcp) = &t.tcp {
        listeners.push(("server.transports.tcp.port".into(), tcp.port, None));
    }
    k.ensure(!listeners.is_empty(), "server.transports", || {
        "enable at least one transport (http, sse, ws or tcp)".into()
    });
    if let Some(port) = s.metrics_port {
        listeners.push(("server.metrics_port".into(), port, None));
    }
    for (i, (key, port, path)) in listeners.iter().enumerate() {
        k.ensure(*port >= 1, key, || "must be a port from 1 to 65535".into());
        if let Some(path) = path {
            let path_key = key.replace(".port", ".path");
            k.ensure(path.starts_with('/'), &path_key, || format!("must start with `/` (got `{path}`)"));
        }
        for (other_key, other_port, other_path) in &listeners[..i] {
            let shareable = matches!((path, other_path), (Some(a), Some(b)) if a != b);
            if *port == *other_port && !shareable {
                k.clash(key, other_key, format!("port {port} is also used by {other_key}; give each listener its own port (HTTP transports may share one when their paths differ)"));
            }
        }
    }
    if let Some(path) = &s.health_path {
        k.ensure(path.starts_with('/'), "server.health_path", || format!("must start with `/` (got `{path}`)"));
    }
    // The builtin image serves both, and its healthcheck reads the one on the other.
    if s.image == "builtin" {
        k.ensure(s.metrics_port.is_some(), "server.metrics_port", || {
            "the builtin server serves /metrics and its health route there: give it a port".into()
        });
        k.ensure(s.health_path.is_some(), "server.health_path", || {
            "the builtin server has a health route: give its path (e.g. /health)".into()
        });
    }

    k.ensure(test.profiles.contains_key(&test.phase_profile), "test.phase_profile", || {
        format!(
            "`{}` is not a profile; the profiles are: {}",
            test.phase_profile,
            test.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    });
    k.ensure(test.failover.kill != KillCount::Count(0), "test.failover.kill", || {
        "must kill at least one task (1, or a share such as 25%)".into()
    });
    k.ensure(test.failover.observe.0.as_secs() >= 5, "test.failover.observe", || {
        "must be at least 5s: recovery is watched for this long after the kill".into()
    });
    k.ensure(test.failover.consecutive_ok >= 1, "test.failover.consecutive_ok", || "must be at least 1".into());
    k.ensure(test.hang.duration.0.as_millis() >= 100, "test.hang.duration", || {
        format!("must be at least 100ms, e.g. 10s (got {})", test.hang.duration)
    });
    k.ensure(test.hang.consecutive_ok >= 1, "test.hang.consecutive_ok", || "must be at least 1".into());
    for (key, u) in [("update", &test.update), ("drain", &test.drain)] {
        k.ensure(u.consecutive_ok >= 1, &format!("test.{key}.consecutive_ok"), || "must be at least 1".into());
        k.ensure(u.timeout.0.as_secs() >= 10, &format!("test.{key}.timeout"), || {
            format!("must be at least 10s: swarm moves the tasks one batch at a time (got {})", u.timeout)
        });
    }
    k.ensure((0.0..=1.0).contains(&test.network.loss), "test.network.loss", || {
        format!("a share from 0 to 1, e.g. 0.01 for 1 % (got {})", test.network.loss)
    });
    k.ensure(test.network.duration.0.as_secs() >= 1, "test.network.duration", || {
        format!("must be at least 1s, e.g. 20s (got {})", test.network.duration)
    });
    k.ensure(test.network.delay.0.as_secs() <= 10, "test.network.delay", || {
        format!("must be at most 10s: a slow link, not a dead one (got {})", test.network.delay)
    });
    k.ensure(test.network.jitter.0 <= test.network.delay.0, "test.network.jitter", || {
        format!("must not exceed test.network.delay ({} > {})", test.network.jitter, test.network.delay)
    });
    k.ensure(test.network.consecutive_ok >= 1, "test.network.consecutive_ok", || "must be at least 1".into());
    for (i, n) in test.scaling.steps.iter().enumerate() {
        k.ensure(*n >= 1, &format!("test.scaling.steps[{i}]"), || "a replica count of at least 1".into());
    }
    k.ensure(test.scaling.hold.0.as_secs() >= 3, "test.scaling.hold", || {
        "must be at least 3s: throughput is measured over it at each replica count".into()
    });
    k.ensure(test.scaling.sessions >= 1, "test.scaling.sessions", || "must be at least 1".into());
    k.ensure(!test.incremental.stages.is_empty(), "test.incremental.stages", || {
        "at least one session count, e.g. [1000, 10000]".into()
    });
    for (i, n) in test.incremental.stages.iter().enumerate() {
        k.ensure(*n >= 1, &format!("test.incremental.stages[{i}]"), || "a session count of at least 1".into());
    }
    for (name, profile) in &test.profiles {
        let key = format!("test.profiles.{name}");
        k.ensure(profile.sessions >= 1, &format!("{key}.sessions"), || "must be at least 1".into());
        k.ensure(profile.ramp >= 1, &format!("{key}.ramp"), || "sessions per second; must be at least 1".into());
        if let Some(period) = profile.period {
            k.ensure(!period.0.is_zero(), &format!("{key}.period"), || {
                "a duration above 0 (e.g. 30s), or leave it out and give think".into()
            });
        }
        if !profile.mix.is_empty() {
            if let Err(e) = profile.mix.parse::<crate::load::workload::Mix>() {
                k.ensure(false, &format!("{key}.mix"), || e);
            }
        }
        for (name, value) in &profile.headers {
            if let Some(why) = crate::load::plan::header_problem(name, value) {
                k.ensure(false, &format!("{key}.headers"), || why);
            }
        }
        let enabled = match profile.transport {
            ClientTransport::Http => t.http.is_some(),
            ClientTransport::Sse => t.sse.is_some(),
            ClientTransport::Ws => t.ws.is_some(),
            ClientTransport::Tcp => t.tcp.is_some(),
        };
        k.ensure(enabled, &format!("{key}.transport"), || {
            let name = serde_yaml::to_string(&profile.transport).unwrap_or_default();
            format!("the server has no `{}` transport; enable server.transports.{0} or pick another", name.trim())
        });
    }

    let hc = &s.healthcheck;
    if !hc.test.is_empty() {
        k.ensure(matches!(hc.test[0].as_str(), "CMD" | "CMD-SHELL" | "NONE"), "server.healthcheck.test", || {
            format!("must start with CMD, CMD-SHELL or NONE (got `{}`)", hc.test[0])
        });
    }
    k.ensure(hc.interval.0.as_millis() >= 1, "server.healthcheck.interval", || "must be longer than 0s".into());
    k.ensure(hc.timeout.0.as_millis() >= 1, "server.healthcheck.timeout", || "must be longer than 0s".into());
    k.ensure(hc.retries >= 1, "server.healthcheck.retries", || "must be at least 1".into());
    k.ensure(s.restart.max_attempts != Some(0), "server.restart.max_attempts", || {
        "must be at least 1, or null for no limit".into()
    });

    for (key, policy) in [("server.update", &s.update), ("server.rollback", &s.rollback)] {
        k.ensure((0.0..=1.0).contains(&policy.max_failure_ratio), &format!("{key}.max_failure_ratio"), || {
            format!("must be from 0 to 1 (got {})", policy.max_failure_ratio)
        });
    }
    k.ensure(s.rollback.failure_action != FailureAction::Rollback, "server.rollback.failure_action", || {
        "a rollback cannot itself roll back: use pause or continue".into()
    });

    for (name, limit) in &s.ulimits {
        k.ensure(ULIMITS.contains(&name.as_str()), &format!("server.ulimits.{name}"), || {
            format!("unknown ulimit; valid: {}", ULIMITS.join(", "))
        });
        k.ensure(*limit >= 1, &format!("server.ulimits.{name}"), || "must be at least 1".into());
    }
    for name in s.sysctls.keys() {
        k.ensure(SYSCTL_PREFIXES.iter().any(|p| name.starts_with(p)), &format!("server.sysctls.{name}"), || {
            format!("swarm can only set namespaced sysctls: names starting with {}", SYSCTL_PREFIXES.join(", "))
        });
    }
    for (name, target) in &s.volumes {
        k.ensure(target.starts_with('/'), &format!("server.volumes.{name}"), || {
            format!("the mount path must be absolute (got `{target}`)")
        });
    }
}

fn placement(k: &mut Checker, key: &str, p: &super::model::Placement) {
    for (i, label) in p.spread.iter().enumerate() {
        let known =
            ["node.labels.", "engine.labels."].iter().any(|pre| label.len() > pre.len() && label.starts_with(pre));
        k.ensure(known, &format!("{key}.spread[{i}]"), || {
            format!("`{label}` is not a label swarm can spread over: use node.labels.NAME or engine.labels.NAME")
        });
    }
}

fn resources(k: &mut Checker, key: &str, r: &Resources) {
    for (part, amount) in [("limits", &r.limits), ("reservations", &r.reservations)] {
        if let Some(m) = amount.memory {
            k.ensure(m.0 >= 4 << 20, &format!("{key}.{part}.memory"), || {
                format!("the engine refuses less than 4M (got {m})")
            });
        }
    }
    if let (Some(limit), Some(reserved)) = (r.limits.cpus, r.reservations.cpus) {
        k.ensure(reserved <= limit, &format!("{key}.reservations.cpus"), || {
            format!("reserves {reserved} CPUs but the limit is {limit}")
        });
    }
    if let (Some(limit), Some(reserved)) = (r.limits.memory, r.reservations.memory) {
        k.ensure(reserved <= limit, &format!("{key}.reservations.memory"), || {
            format!("reserves {reserved} but the limit is {limit}")
        });
    }
}

fn unique_ports(k: &mut Checker, ports: &[(&str, u16)]) {
    let mut seen: BTreeMap<u16, &str> = BTreeMap::new();
    for (key, port) in ports {
        k.ensure(*port >= 1, key, || "must be a port from 1 to 65535".into());
        if let Some(first) = seen.get(port) {
            k.clash(
                key,
                first,
                format!("port {port} is published by both {first} and {key}; host-mode ports must be distinct"),
            );
        } else {
            seen.insert(*port, key);
        }
    }
}

/// `host`, `host:port` or empty; what an image reference may start with.
fn valid_registry(r: &str) -> bool {
    if r.is_empty() {
        return true;
    }
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    let host_ok = !host.is_empty()
        && host
            .split('.')
            .all(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    host_ok && port.map_or(true, |p| p.parse::<u16>().is_ok_and(|p| p > 0))
}
