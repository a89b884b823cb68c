//! One compose service → one `ServiceSpec`, through small helpers that each convert one
//! compose block (and are table-tested one by one).

use std::collections::BTreeMap;

use bollard::models::*;

use super::{ConvertError, Names, Namespace, LABEL_IMAGE};
use crate::compose::{self, Service};
use crate::units::Duration;

/// Converts the service `key` of a compose file.
pub fn convert_service(ns: &Namespace, key: &str, svc: &Service, names: &Names) -> Result<ServiceSpec, ConvertError> {
    let at = |k: &str| format!("services.{key}.{k}");
    let deploy = &svc.deploy;

    let mut service_labels = deploy.labels.clone();
    service_labels.insert(LABEL_IMAGE.into(), svc.image.clone());

    let env: Vec<String> = svc
        .environment
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect();

    let container = TaskSpecContainerSpec {
        image: Some(svc.image.clone()),
        labels: Some(ns.labels(&svc.labels)),
        command: svc.entrypoint.clone(),
        args: svc.command.clone(),
        hostname: svc.hostname.clone(),
        env: (!env.is_empty()).then_some(env),
        dir: svc.working_dir.clone(),
        user: svc.user.clone(),
        init: svc.init,
        read_only: svc.read_only,
        stop_signal: svc.stop_signal.clone(),
        stop_grace_period: svc.stop_grace_period.map(Duration::as_nanos_i64),
        health_check: svc.healthcheck.as_ref().map(convert_healthcheck),
        mounts: non_empty(convert_mounts(ns, svc, names, &at("volumes"))?),
        configs: non_empty(convert_configs(svc, names, &at("configs"))?),
        secrets: non_empty(convert_secrets(svc, names, &at("secrets"))?),
        ulimits: non_empty(convert_ulimits(&svc.ulimits)),
        sysctls: (!svc.sysctls.is_empty()).then(|| svc.sysctls.clone().into_iter().collect()),
        ..Default::default()
    };

    let task = TaskSpec {
        container_spec: Some(container),
        resources: convert_resources(&deploy.resources),
        restart_policy: deploy
            .restart_policy
            .as_ref()
            .map(|r| convert_restart_policy(r, &at("deploy.restart_policy")))
            .transpose()?,
        placement: deploy.placement.as_ref().map(convert_placement),
        networks: Some(convert_networks(key, svc, names, &at("networks"))?),
        ..Default::default()
    };

    Ok(ServiceSpec {
        name: Some(ns.scope(key)),
        labels: Some(ns.labels(&service_labels)),
        task_template: Some(task),
        mode: Some(convert_mode(deploy.mode.as_deref(), deploy.replicas, &at("deploy.mode"))?),
        update_config: deploy
            .update_config
            .as_ref()
            .map(|u| convert_update_config(u, &at("deploy.update_config")))
            .transpose()?,
        rollback_config: deploy
            .rollback_config
            .as_ref()
            .map(|u| convert_update_config(u, &at("deploy.rollback_config")).map(as_rollback))
            .transpose()?,
        endpoint_spec: Some(convert_endpoint(
            deploy.endpoint_mode.as_deref(),
            &svc.ports,
            &at("deploy.endpoint_mode"),
        )?),
        ..Default::default()
    })
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// `deploy.mode` + `deploy.replicas` → swarm mode (replicated defaults to 1 replica).
pub fn convert_mode(mode: Option<&str>, replicas: Option<u64>, at: &str) -> Result<ServiceSpecMode, ConvertError> {
    match mode.unwrap_or("replicated") {
        "replicated" => Ok(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(replicas.unwrap_or(1) as i64) }),
            ..Default::default()
        }),
        "global" if replicas.is_some() => Err(ConvertError::new(at, "`replicas` cannot be used with mode global")),
        "global" => Ok(ServiceSpecMode { global: Some(Default::default()), ..Default::default() }),
        other => Err(ConvertError::new(at, format!("unknown mode `{other}`: use replicated or global"))),
    }
}

/// `deploy.resources` → limits and reservations; `None` when nothing is set.
pub fn convert_resources(r: &compose::DeployResources) -> Option<TaskSpecResources> {
    let limits = r.limits.as_ref().map(|l| Limit {
        nano_cpus: l.cpus.map(|c| c.as_nano_cpus()),
        memory_bytes: l.memory.map(|m| m.as_i64()),
        pids: l.pids,
    });
    let reservations = r.reservations.as_ref().map(|l| ResourceObject {
        nano_cpus: l.cpus.map(|c| c.as_nano_cpus()),
        memory_bytes: l.memory.map(|m| m.as_i64()),
        ..Default::default()
    });
    (limits.is_some() || reservations.is_some()).then(|| TaskSpecResources {
        limits,
        reservations,
        ..Default::default()
    })
}

/// `deploy.restart_policy` → restart policy with nanosecond durations.
pub fn convert_restart_policy(r: &compose::RestartPolicy, at: &str) -> Result<TaskSpecRestartPolicy, ConvertError> {
    let condition = match r.condition.as_deref() {
        None => None,
        Some("none") => Some(TaskSpecRestartPolicyConditionEnum::NONE),
        Some("on-failure") => Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
        Some("any") => Some(TaskSpecRestartPolicyConditionEnum::ANY),
        Some(other) => {
            return Err(ConvertError::new(
                format!("{at}.condition"),
                format!("unknown restart condition `{other}`: use none, on-failure or any"),
            ))
        }
    };
    // Written the way the engine stores it (0 attempts = unlimited, a zero window is no
    // window), so that a deployed spec reads back equal to the one we computed.
    Ok(TaskSpecRestartPolicy {
        condition,
        delay: r.delay.map(Duration::as_nanos_i64),
        max_attempts: Some(r.max_attempts.unwrap_or(0) as i64),
        window: nonzero(r.window),
    })
}

fn nonzero(d: Option<Duration>) -> Option<i64> {
    d.map(Duration::as_nanos_i64).filter(|n| *n != 0)
}

/// `deploy.update_config` → update config. As in compose, a present block defaults
/// `parallelism` to 1; the other defaults are the engine's (pause, ratio 0, no delay), written
/// out so that a deployed spec reads back equal to the one we computed.
pub fn convert_update_config(u: &compose::UpdateConfig, at: &str) -> Result<ServiceSpecUpdateConfig, ConvertError> {
    let failure_action = match u.failure_action.as_deref() {
        None => None,
        Some("continue") => Some(ServiceSpecUpdateConfigFailureActionEnum::CONTINUE),
        Some("pause") => Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE),
        Some("rollback") => Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
        Some(other) => {
            return Err(ConvertError::new(
                format!("{at}.failure_action"),
                format!("unknown failure action `{other}`: use continue, pause or rollback"),
            ))
        }
    };
    let order = match u.order.as_deref() {
        None => None,
        Some("stop-first") => Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
        Some("start-first") => Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
        Some(other) => {
            return Err(ConvertError::new(
                format!("{at}.order"),
                format!("unknown update order `{other}`: use stop-first or start-first"),
            ))
        }
    };
    if let Some(ratio) = u.max_failure_ratio {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(ConvertError::new(
                format!("{at}.max_failure_ratio"),
                format!("must be from 0 to 1 (got {ratio})"),
            ));
        }
    }
    Ok(ServiceSpecUpdateConfig {
        parallelism: Some(u.parallelism.unwrap_or(1) as i64),
        delay: nonzero(u.delay),
        failure_action: Some(failure_action.unwrap_or(ServiceSpecUpdateConfigFailureActionEnum::PAUSE)),
        monitor: nonzero(u.monitor),
        max_failure_ratio: Some(u.max_failure_ratio.unwrap_or(0.0)),
        order,
    })
}

fn as_rollback(u: ServiceSpecUpdateConfig) -> ServiceSpecRollbackConfig {
    ServiceSpecRollbackConfig {
        parallelism: u.parallelism,
        delay: u.delay,
        failure_action: u.failure_action.map(|a| match a {
            ServiceSpecUpdateConfigFailureActionEnum::CONTINUE => ServiceSpecRollbackConfigFailureActionEnum::CONTINUE,
            ServiceSpecUpdateConfigFailureActionEnum::PAUSE => ServiceSpecRollbackConfigFailureActionEnum::PAUSE,
            _ => ServiceSpecRollbackConfigFailureActionEnum::EMPTY,
        }),
        monitor: u.monitor,
        max_failure_ratio: u.max_failure_ratio,
        order: u.order.map(|o| match o {
            ServiceSpecUpdateConfigOrderEnum::START_FIRST => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
            ServiceSpecUpdateConfigOrderEnum::STOP_FIRST => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            ServiceSpecUpdateConfigOrderEnum::EMPTY => ServiceSpecRollbackConfigOrderEnum::EMPTY,
        }),
    }
}

/// `healthcheck` → health config (`disable` → `["NONE"]`).
pub fn convert_healthcheck(h: &compose::Healthcheck) -> HealthConfig {
    if h.disable {
        return HealthConfig { test: Some(vec!["NONE".into()]), ..Default::default() };
    }
    HealthConfig {
        test: h.test.clone(),
        interval: h.interval.map(Duration::as_nanos_i64),
        timeout: h.timeout.map(Duration::as_nanos_i64),
        retries: h.retries.map(|r| r as i64),
        start_period: h.start_period.map(Duration::as_nanos_i64),
        start_interval: h.start_interval.map(Duration::as_nanos_i64),
    }
}

/// `deploy.placement` → placement.
pub fn convert_placement(p: &compose::Placement) -> TaskSpecPlacement {
    TaskSpecPlacement {
        constraints: non_empty(p.constraints.clone()),
        preferences: non_empty(
            p.preferences
                .iter()
                .map(|pref| TaskSpecPlacementPreferences {
                    spread: Some(TaskSpecPlacementSpread { spread_descriptor: Some(pref.spread.clone()) }),
                })
                .collect(),
        ),
        max_replicas: p.max_replicas_per_node.map(|n| n as i64),
        ..Default::default()
    }
}

/// `deploy.endpoint_mode` + `ports` → endpoint spec, ports sorted; `vip` when unset, as the
/// engine stores it. Swarm refuses ingress ports on a dnsrr service; say so here rather than
/// at deploy time.
pub fn convert_endpoint(mode: Option<&str>, ports: &[compose::Port], at: &str) -> Result<EndpointSpec, ConvertError> {
    let mode = match mode {
        None | Some("vip") => Some(EndpointSpecModeEnum::VIP),
        Some("dnsrr") => Some(EndpointSpecModeEnum::DNSRR),
        Some(other) => return Err(ConvertError::new(at, format!("unknown endpoint mode `{other}`: use vip or dnsrr"))),
    };
    let port_at = at.replace("deploy.endpoint_mode", "ports");
    let mut out = Vec::with_capacity(ports.len());
    for p in ports {
        let protocol = match p.protocol.as_str() {
            "tcp" => EndpointPortConfigProtocolEnum::TCP,
            "udp" => EndpointPortConfigProtocolEnum::UDP,
            "sctp" => EndpointPortConfigProtocolEnum::SCTP,
            other => {
                return Err(ConvertError::new(&port_at, format!("unknown protocol `{other}`: use tcp, udp or sctp")))
            }
        };
        let publish_mode = match p.mode.as_str() {
            "ingress" => EndpointPortConfigPublishModeEnum::INGRESS,
            "host" => EndpointPortConfigPublishModeEnum::HOST,
            other => {
                return Err(ConvertError::new(&port_at, format!("unknown publish mode `{other}`: use ingress or host")))
            }
        };
        if mode == Some(EndpointSpecModeEnum::DNSRR) && publish_mode == EndpointPortConfigPublishModeEnum::INGRESS {
            return Err(ConvertError::new(
                &port_at,
                format!("port {} is published in ingress mode, which swarm refuses with endpoint_mode dnsrr: use mode: host", p.target),
            ));
        }
        out.push(EndpointPortConfig {
            protocol: Some(protocol),
            target_port: Some(p.target.into()),
            published_port: p.published.map(i64::from),
            publish_mode: Some(publish_mode),
            ..Default::default()
        });
    }
    out.sort_by_key(|p| (p.published_port, p.target_port));
    Ok(EndpointSpec { mode, ports: non_empty(out) })
}

/// `ulimits` → ulimits sorted by name.
pub fn convert_ulimits(ulimits: &BTreeMap<String, compose::Ulimit>) -> Vec<ResourcesUlimits> {
    ulimits
        .iter()
        .map(|(name, u)| {
            let (soft, hard) = match *u {
                compose::Ulimit::Single(n) => (n, n),
                compose::Ulimit::Pair { soft, hard } => (soft, hard),
            };
            ResourcesUlimits { name: Some(name.clone()), soft: Some(soft), hard: Some(hard) }
        })
        .collect()
}

/// `networks` → attachments with the service's short name as an alias, sorted by target.
pub fn convert_networks(
    key: &str,
    svc: &Service,
    names: &Names,
    at: &str,
) -> Result<Vec<NetworkAttachmentConfig>, ConvertError> {
    let default_nets: BTreeMap<String, compose::ServiceNetwork> =
        [("default".to_string(), compose::ServiceNetwork::default())].into();
    let nets = match &svc.networks {
        Some(n) if !n.is_empty() => n,
        _ => &default_nets,
    };
    let mut out = Vec::new();
    for (net, opts) in nets {
        let target = names.networks.get(net).ok_or_else(|| {
            ConvertError::new(at, format!("network `{net}` is not defined in the top-level `networks:`"))
        })?;
        let mut aliases = vec![key.to_string()];
        aliases.extend(opts.aliases.iter().cloned());
        out.push(NetworkAttachmentConfig {
            target: Some(target.clone()),
            aliases: Some(aliases),
            ..Default::default()
        });
    }
    out.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(out)
}

/// `volumes` → mounts; named volumes get the stack's prefix and labels.
pub fn convert_mounts(ns: &Namespace, svc: &Service, names: &Names, at: &str) -> Result<Vec<Mount>, ConvertError> {
    svc.volumes
        .iter()
        .map(|v| {
            let mut mount =
                Mount { target: Some(v.target.clone()), read_only: v.read_only.then_some(true), ..Default::default() };
            match v.kind.as_str() {
                "volume" => {
                    mount.typ = Some(MountType::VOLUME);
                    if let Some(src) = &v.source {
                        let name = names.volumes.get(src).ok_or_else(|| {
                            ConvertError::new(at, format!("volume `{src}` is not defined in the top-level `volumes:`"))
                        })?;
                        mount.source = Some(name.clone());
                    }
                    mount.volume_options = Some(MountVolumeOptions {
                        no_copy: v.nocopy.then_some(true),
                        labels: Some(ns.labels(&BTreeMap::new())),
                        ..Default::default()
                    });
                }
                "bind" => {
                    let src =
                        v.source.clone().ok_or_else(|| ConvertError::new(at, "a bind mount needs a source path"))?;
                    mount.typ = Some(MountType::BIND);
                    mount.source = Some(src);
                }
                "tmpfs" => {
                    mount.typ = Some(MountType::TMPFS);
                    mount.tmpfs_options =
                        v.tmpfs_size.map(|s| MountTmpfsOptions { size_bytes: Some(s.as_i64()), ..Default::default() });
                }
                other => {
                    return Err(ConvertError::new(
                        at,
                        format!("unsupported mount type `{other}`: use volume, bind or tmpfs"),
                    ))
                }
            }
            Ok(mount)
        })
        .collect()
}

/// `configs` → config references (by name; the ID is filled in at deploy), sorted by name as
/// the docker CLI sorts them.
pub fn convert_configs(
    svc: &Service,
    names: &Names,
    at: &str,
) -> Result<Vec<TaskSpecContainerSpecConfigs>, ConvertError> {
    let mut out = Vec::new();
    for r in &svc.configs {
        let name = names.configs.get(&r.source).ok_or_else(|| {
            ConvertError::new(at, format!("config `{}` is not defined in the top-level `configs:`", r.source))
        })?;
        out.push(TaskSpecContainerSpecConfigs {
            file: Some(TaskSpecContainerSpecFile1 {
                name: Some(r.target.clone().unwrap_or_else(|| format!("/{}", r.source))),
                uid: Some(r.uid.clone().unwrap_or_else(|| "0".into())),
                gid: Some(r.gid.clone().unwrap_or_else(|| "0".into())),
                mode: Some(r.mode.unwrap_or(0o444)),
            }),
            config_name: Some(name.clone()),
            ..Default::default()
        });
    }
    out.sort_by(|a, b| a.config_name.cmp(&b.config_name));
    Ok(out)
}

/// `secrets` → secret references (by name), sorted by name.
pub fn convert_secrets(
    svc: &Service,
    names: &Names,
    at: &str,
) -> Result<Vec<TaskSpecContainerSpecSecrets>, ConvertError> {
    let mut out = Vec::new();
    for r in &svc.secrets {
        let name = names.secrets.get(&r.source).ok_or_else(|| {
            ConvertError::new(at, format!("secret `{}` is not defined in the top-level `secrets:`", r.source))
        })?;
        out.push(TaskSpecContainerSpecSecrets {
            file: Some(TaskSpecContainerSpecFile {
                name: Some(r.target.clone().unwrap_or_else(|| r.source.clone())),
                uid: Some(r.uid.clone().unwrap_or_else(|| "0".into())),
                gid: Some(r.gid.clone().unwrap_or_else(|| "0".into())),
                mode: Some(r.mode.unwrap_or(0o444)),
            }),
            secret_name: Some(name.clone()),
            ..Default::default()
        });
    }
    out.sort_by(|a, b| a.secret_name.cmp(&b.secret_name));
    Ok(out)
}
