//! Deploying a stack, as `up` and `test` both do: the stack's source (file, `--set`,
//! templates) → config → rendered files → desired specs → plan against what the engine has →
//! apply → wait until converged → endpoints. Everything the engine is asked goes through the
//! engine seam; what the user sees goes through a progress reporter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{self, ClientTransport, Config, Entry};
use crate::convert::{convert_stack, DesiredStack, Namespace};
use crate::engine::converge::{self, ServiceState};
use crate::engine::{credentials, fleet, stack, swarm, Credentials, Engine};
use crate::plan::{self, topology, Action, Plan};
use crate::progress::Progress;
use crate::render::{self, Inputs, Templates};
use crate::{image, state};

/// Where a stack comes from: a built-in name or a file, `--set` overrides, a templates folder.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// `--stack`: a built-in name or a path (`default` when `None`).
    pub stack: Option<String>,
    /// `--set key=value`, in order.
    pub sets: Vec<String>,
    /// `--templates DIR`.
    pub templates: Option<PathBuf>,
}

impl Source {
    /// The stack's configuration, layered and validated.
    pub fn config(&self) -> anyhow::Result<Config> {
        let config = config::load(self.stack.as_deref(), &self.sets)?;
        tracing::info!(stack = %config.name, "configuration loaded");
        Ok(config)
    }

    /// The templates: the embedded ones, or a folder's over them.
    pub fn templates(&self) -> anyhow::Result<Templates> {
        match &self.templates {
            Some(dir) => {
                Templates::with_overrides(dir).with_context(|| format!("cannot use the templates in {}", dir.display()))
            }
            None => Ok(Templates::embedded()?),
        }
    }

    /// Config and desired specs; `builtin_image` is the tag the `builtin` server image has.
    pub fn prepare(&self, builtin_image: Option<String>) -> anyhow::Result<(Config, DesiredStack)> {
        let config = self.config()?;
        let templates = self.templates()?;
        let grafana_admin_password =
            if config.grafana.enabled { Some(state::grafana_admin_password(&config.name)?) } else { None };
        let inputs = Inputs { version: env!("CARGO_PKG_VERSION").into(), grafana_admin_password, builtin_image };
        let rendered = render::render(&config, &templates, &inputs)?;
        let files: BTreeMap<String, String> =
            rendered.files.iter().map(|(k, v)| (k.clone(), v.content.clone())).collect();
        let mut desired = convert_stack(&Namespace(config.name.clone()), &rendered.compose, &files)?;
        // Which services carry a login is part of what is deployed: turning it on updates
        // them, handing the login over, as any other change would.
        if config.with_registry_auth {
            for s in &mut desired.services {
                s.labels.get_or_insert_with(Default::default).insert(LABEL_WITH_REGISTRY_AUTH.into(), "true".into());
            }
        }
        Ok((config, desired))
    }
}

/// On every service of a stack deployed with `with_registry_auth`.
pub const LABEL_WITH_REGISTRY_AUTH: &str = "swarmctl.with-registry-auth";

/// One way into the deployed stack.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    /// What it is.
    pub name: String,
    /// Where.
    pub url: String,
}

/// The host the stack's host-mode ports are reached at: DOCKER_HOST's host for a remote
/// engine (tcp://, https://, ssh://), else loopback.
pub fn public_host() -> String {
    std::env::var("DOCKER_HOST").ok().and_then(|h| engine_host(&h)).unwrap_or_else(|| "127.0.0.1".into())
}

/// The host part of a DOCKER_HOST URL that names a remote engine; for `ssh://`, the address
/// the ssh client would connect to (a `~/.ssh/config` alias is no name the network knows).
fn engine_host(url: &str) -> Option<String> {
    let (scheme, host, _) = crate::engine::remote_host(url)?;
    if scheme == "ssh" {
        return Some(ssh_hostname(host).unwrap_or_else(|| host.to_string()));
    }
    Some(host.to_string())
}

/// `ssh -G`'s `hostname` for `alias`: what ~/.ssh/config makes of it.
fn ssh_hostname(alias: &str) -> Option<String> {
    let out = std::process::Command::new("ssh").args(["-G", alias]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("hostname ")).map(|h| h.trim().to_string()).filter(|h| !h.is_empty())
}

/// The endpoints of a stack, from its configuration and its load balancer's entries (one
/// set per Traefik task when each has ports of its own).
pub fn endpoints(c: &Config, host: &str, entries: &[Entry]) -> Vec<Endpoint> {
    let mut out = Vec::new();
    let mut add = |name: &str, url: String| out.push(Endpoint { name: name.into(), url });
    for (k, entry) in entries.iter().enumerate() {
        let which = if entries.len() > 1 { format!(" lb {}/{}", k + 1, entries.len()) } else { String::new() };
        for (name, transport) in [
            ("Streamable HTTP", ClientTransport::Http),
            ("HTTP+SSE", ClientTransport::Sse),
            ("WebSocket", ClientTransport::Ws),
            ("TCP", ClientTransport::Tcp),
        ] {
            if let Ok(url) = c.client_url(transport, host, *entry) {
                // Users paste these into MCP clients, which speak http:// to legacy SSE servers.
                add(&format!("mcp ({name}){which}"), url.replace("sse://", "http://"));
            }
        }
        if let Entry::Lb { web, metrics, .. } = entry {
            if let (Some(_), Some(path)) = (&c.server.transports.http, &c.server.health_path) {
                add(&format!("health{which}"), format!("http://{host}:{web}{path}"));
            }
            add(&format!("{} metrics{which}", c.lb.kind.name()), format!("http://{host}:{metrics}/metrics"));
        }
    }
    if c.prometheus.enabled {
        add("prometheus", format!("http://{host}:{}", c.prometheus.port));
    }
    if c.grafana.enabled {
        add("grafana (user admin)", format!("http://{host}:{}", c.grafana.port));
    }
    out
}

/// Host-mode ports this node must still be able to bind: those of services not deployed yet.
pub fn busy_ports(desired: &DesiredStack, plan: &Plan) -> Vec<String> {
    use bollard::models::EndpointPortConfigPublishModeEnum;
    let mut problems = Vec::new();
    for spec in &desired.services {
        let name = spec.name.clone().unwrap_or_default();
        let creating = plan.steps.iter().any(|s| s.name == name && s.action == Action::Create);
        if !creating {
            continue;
        }
        for p in spec.endpoint_spec.iter().flat_map(|e| e.ports.iter().flatten()) {
            if p.publish_mode != Some(EndpointPortConfigPublishModeEnum::HOST) {
                continue;
            }
            let Some(port) = p.published_port else { continue };
            if std::net::TcpListener::bind(("0.0.0.0", port as u16)).is_err() {
                problems.push(format!(
                    "service {name}: host port {port} is already in use on this node; free it or change the port in the stack"
                ));
            }
        }
    }
    problems
}

/// Packs this binary as the builtin image: `tag`, plus `swarmctl/mcp-server:<version>`.
pub async fn pack_self(engine: &dyn Engine, tag: &str) -> anyhow::Result<String> {
    pack_self_as(engine, &[tag.to_string()]).await
}

/// Packs this binary as the builtin image under `tags`, plus `swarmctl/mcp-server:<version>`.
async fn pack_self_as(engine: &dyn Engine, tags: &[String]) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find this swarmctl binary")?;
    let contents = image::inspect(&exe, "swarmctl")?;
    if !contents.is_static() {
        bail!("this swarmctl binary is not static ({} libraries); build it with the repository's .cargo/config.toml (+crt-static)", contents.libraries.len());
    }
    let mut tags = tags.to_vec();
    tags.push(format!("{}:{}", render::BUILTIN_IMAGE_REPO, env!("CARGO_PKG_VERSION")));
    let labels = vec![("org.opencontainers.image.title".to_string(), "swarmctl reference MCP server".to_string())];
    Ok(engine.build_image(&contents, &tags, &labels).await?)
}

/// The builtin image's reference, in `registry` when one is given (`host:port/swarmctl/…`).
pub fn builtin_reference(registry: &str) -> anyhow::Result<String> {
    let tag = image::builtin_tag()?;
    Ok(if registry.is_empty() { tag } else { format!("{registry}/{tag}") })
}

/// The builtin image's reference, packed from this binary when the engine does not have it
/// yet, and pushed to `registry` when one is given, so that every node can pull it.
pub async fn builtin_image(engine: &dyn Engine, registry: &str, progress: &dyn Progress) -> anyhow::Result<String> {
    let reference = builtin_reference(registry)?;
    if !engine.image_exists(&reference).await? {
        progress.begin("pack", &format!("packing {reference}"), 0, "");
        let mut tags = vec![reference.clone()];
        if !registry.is_empty() {
            tags.push(image::builtin_tag()?);
        }
        let packed = pack_self_as(engine, &tags).await;
        progress.end("pack", if packed.is_ok() { "packed the builtin image from this swarmctl binary" } else { "" });
        packed?;
    }
    if !registry.is_empty() {
        let login = login_for(&reference).await?;
        progress.begin("push", &format!("pushing {reference}"), 0, "");
        let pushed = engine.push_image(&reference, login.clone()).await;
        progress
            .end("push", if pushed.is_ok() { "pushed the builtin image; every node pulls it from there" } else { "" });
        pushed.with_context(|| {
            let login = match login {
                Some(_) => "the login kept for it was sent".to_string(),
                None => format!("if it needs a login: `docker login {registry}`, or DOCKER_CONFIG naming a config that has one"),
            };
            format!("cannot push the builtin image to the registry {registry} (stack key `registry`): is it running, does this engine trust it (insecure-registries, or TLS)? {login}")
        })?;
    }
    Ok(reference)
}

/// The login `docker login` keeps for `image`'s registry (its config file or credential
/// helper), if any.
pub async fn login_for(image: &str) -> anyhow::Result<Option<Credentials>> {
    let store = credentials::Store::load()?;
    Ok(store.get(credentials::registry_of(image)).await?)
}

/// What a stack with `with_registry_auth` hands the swarm: the login kept for each of its
/// images' registries. A registry with none (Docker Hub aside, which serves most images
/// anonymously) is said: its nodes will pull without one.
pub async fn logins_to_hand_over(
    config: &Config,
    desired: &crate::convert::DesiredStack,
    progress: &dyn Progress,
) -> anyhow::Result<BTreeMap<String, Credentials>> {
    if !config.with_registry_auth {
        return Ok(BTreeMap::new());
    }
    let store = credentials::Store::load()?;
    let images: Vec<&str> = desired.services.iter().map(stack::image_of).collect();
    let found = credentials::for_images(&store, images.iter().copied()).await?;
    let mut missing: Vec<&str> = images.iter().map(|i| credentials::registry_of(i)).collect();
    missing.retain(|r| *r != "docker.io" && !found.contains_key(*r));
    missing.sort_unstable();
    missing.dedup();
    for r in missing {
        progress.say(&format!(
            "warning: with_registry_auth is set but {} keeps no login for {r}: its nodes pull anonymously (`docker login {r}`, or DOCKER_CONFIG)",
            store.path().display()
        ));
    }
    Ok(found)
}

/// Makes the engine a manager when it is in no swarm (`init_if_needed`) and checks it is one.
pub async fn require_manager(
    engine: &dyn Engine,
    advertise: Option<&str>,
    init_if_needed: bool,
    progress: &dyn Progress,
) -> anyhow::Result<()> {
    if init_if_needed {
        if let Some(id) = swarm::init(engine, advertise).await? {
            progress.say(&format!("swarm initialized on this engine (node {id})"));
        }
    }
    Ok(swarm::require_manager(engine).await?)
}

/// What `up` was asked.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Plan only.
    pub dry_run: bool,
    /// Also remove services the stack no longer has.
    pub prune: bool,
    /// Give up waiting for convergence after this long.
    pub timeout: Duration,
    /// Where the stack's published ports answer (`public_host`, or `--host`).
    pub host: String,
}

/// What `up` did.
#[derive(Debug)]
pub enum Up {
    /// `--dry-run`: the plan, nothing changed.
    Planned(Plan),
    /// Deployed and converged.
    Deployed {
        /// The stack.
        config: Box<Config>,
        /// What was done.
        plan: Plan,
        /// Every service, converged.
        states: Vec<ServiceState>,
        /// Where the stack answers.
        endpoints: Vec<Endpoint>,
    },
}

/// Render → plan → apply → wait until converged. Nothing is changed when the stack cannot be
/// placed; a deploy stopped part-way says so, and `up` again continues from there.
pub async fn up(
    engine: &dyn Engine,
    source: &Source,
    opts: &UpOptions,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<Up> {
    let config_only = source.config()?;
    require_manager(engine, None, !opts.dry_run, progress).await?;
    let builtin = match (config_only.server.image == "builtin", opts.dry_run) {
        (true, false) => Some(builtin_image(engine, &config_only.registry, progress).await?),
        (true, true) => Some(builtin_reference(&config_only.registry)?),
        (false, _) => None,
    };
    let (config, desired) = source.prepare(builtin)?;
    let observed = engine.observe(&config.name).await?;
    let plan = plan::diff(&desired, &observed, opts.prune);
    if opts.dry_run {
        return Ok(Up::Planned(plan));
    }
    let nodes = engine.nodes().await?;
    let mut problems = topology::check(&desired, &nodes);
    problems.extend(busy_ports(&desired, &plan));
    if !problems.is_empty() {
        for p in &problems {
            progress.say(&format!("problem: {p}"));
        }
        bail!("the stack cannot be placed as configured; nothing was changed");
    }
    for spec in &desired.services {
        let image = stack::image_of(spec);
        if !engine.image_exists(image).await? {
            tracing::warn!("image {image} is not on this node; the nodes must pull it from a registry (for Traefik and Prometheus without one: scripts/offline-images)");
        }
    }
    // Read before anything changes: a config that cannot be read leaves the stack as it was.
    let logins = logins_to_hand_over(&config, &desired, progress).await?;
    progress.say(plan.render().trim_end());
    stack::ensure_volumes(engine, &desired).await?;
    let warnings = stack::apply(engine, &desired, &plan, &logins, &mut |line| progress.say(line)).await.context(
        "deploy stopped part-way; what was done is listed above, and `swarmctl up` again continues from there",
    )?;
    for w in &warnings {
        tracing::warn!("{w}");
    }

    let names: Vec<String> = desired.services.iter().filter_map(|s| s.name.clone()).collect();
    let mut begun = std::collections::BTreeSet::new();
    let result = converge::wait(engine, &names, opts.timeout, Duration::from_secs(3), cancel, &mut |states| {
        for s in states {
            if begun.insert(s.name.clone()) {
                progress.begin(&s.name, &s.name, s.desired, "running");
            }
            progress.set(&s.name, s.running.min(s.desired), s.note.as_deref().unwrap_or_default());
        }
        let line: Vec<String> = states.iter().map(|s| format!("{} {}/{}", s.name, s.running, s.desired)).collect();
        progress.tick(&format!("waiting: {}", line.join(", ")));
    })
    .await;
    for name in &begun {
        progress.end(name, "");
    }
    let states = result.context("the stack was deployed but did not converge")?;
    let entries = fleet::lb_entries(engine, &config).await?;
    // Running tasks are not yet routed ones: Traefik polls the swarm (every `lb.refresh`), so
    // for a moment after convergence the endpoints answer 404.
    if let Some(check) = crate::phase::ready::Check::of(&config) {
        match crate::phase::ready::lb_answers(&config, &opts.host, &entries, &check, 1, Duration::from_secs(30)).await {
            Ok(()) => progress.say(&format!("routed: through the load balancer, {}", check.describe())),
            Err(url) => progress
                .say(&format!("warning: the load balancer does not route {url} yet (30 s after the tasks converged)")),
        }
    }
    progress.say(&format!(
        "stack {} converged: {}",
        config.name,
        states.iter().map(|s| format!("{} {}/{}", s.name, s.running, s.desired)).collect::<Vec<_>>().join(", ")
    ));
    let endpoints = endpoints(&config, &opts.host, &entries);
    Ok(Up::Deployed { config: Box::new(config), plan, states, endpoints })
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoints_use_the_remote_engines_host() {
        assert_eq!(super::engine_host("tcp://10.0.0.5:2376").as_deref(), Some("10.0.0.5"));
        assert_eq!(super::engine_host("https://swarm.example.com:2376").as_deref(), Some("swarm.example.com"));
        assert_eq!(super::engine_host("ssh://ops@manager-1").as_deref(), Some("manager-1"));
        assert_eq!(super::engine_host("ssh://ops@manager-1:2222").as_deref(), Some("manager-1"));
        assert_eq!(super::engine_host("tcp://[fd00::5]:2376").as_deref(), Some("fd00::5"));
        assert_eq!(super::engine_host("unix:///var/run/docker.sock"), None);
    }

    use super::*;
    use crate::engine::fake::{Fake, Fate};
    use crate::progress::Recording;

    fn ci() -> Source {
        // No Prometheus or Grafana: nothing here answers HTTP, and the routes check of a
        // stack without a Streamable HTTP transport is skipped.
        Source {
            stack: Some("ci".into()),
            sets: ["server.replicas=3", "server.transports.http=null", "test.profiles.baseline.transport=ws"]
                .map(String::from)
                .to_vec(),
            templates: None,
        }
    }

    fn opts() -> UpOptions {
        UpOptions { dry_run: false, prune: false, timeout: Duration::from_secs(60), host: "127.0.0.1".into() }
    }

    #[tokio::test(start_paused = true)]
    async fn up_applies_the_plan_in_order_then_changes_nothing() {
        let fake = Fake::swarm(2);
        fake.add_image(&image::builtin_tag().unwrap());
        let progress = Recording::default();
        let cancel = CancellationToken::new();
        let Up::Deployed { plan, states, .. } = up(&fake, &ci(), &opts(), &progress, &cancel).await.unwrap() else {
            panic!("deployed")
        };
        assert!(states.iter().all(|s| s.converged()), "{states:?}");
        let calls = fake.calls();
        let first = |prefix: &str| calls.iter().position(|c| c.starts_with(prefix)).unwrap_or(usize::MAX);
        assert!(first("create network") < first("create config"), "{calls:?}");
        assert!(first("create config") < first("create service"), "{calls:?}");
        assert_eq!(
            calls.iter().filter(|c| c.starts_with("create service")).count(),
            plan.names(Action::Create).iter().filter(|n| n.starts_with("service/")).count()
        );
        // Services reference their configs by the IDs the engine gave them, and carry the
        // spec hash the next plan compares.
        let server = fake.spec("swarmctl-ci_server").expect("the server service");
        let container = server.task_template.unwrap().container_spec.unwrap();
        assert!(container
            .configs
            .iter()
            .flatten()
            .all(|c| c.config_id.as_deref().is_some_and(|id| id.starts_with("cfg"))));
        assert!(server.labels.unwrap().contains_key(crate::plan::LABEL_SPEC_HASH));
        let events = progress.events();
        assert!(events.iter().any(|e| e.starts_with("begin swarmctl-ci_server 3 running")), "{events:?}");
        assert!(events.iter().any(|e| e.starts_with("say stack swarmctl-ci converged")), "{events:?}");

        // The same input again: nothing to do, nothing written.
        let before = fake.calls().len();
        let Up::Deployed { plan, .. } = up(&fake, &ci(), &opts(), &progress, &cancel).await.unwrap() else {
            panic!("deployed")
        };
        assert!(plan.names(Action::Create).is_empty() && plan.names(Action::Update).is_empty(), "{}", plan.render());
        assert_eq!(fake.calls().len(), before, "{:?}", &fake.calls()[before..]);
    }

    #[tokio::test(start_paused = true)]
    async fn up_packs_the_builtin_image_when_the_engine_lacks_it() {
        let fake = Fake::swarm(0);
        let progress = Recording::default();
        let result = up(&fake, &ci(), &opts(), &progress, &CancellationToken::new()).await;
        let calls = fake.calls();
        // The test binary is not static: packing it is refused with the reason, before
        // anything is deployed.
        match result {
            Ok(_) => assert!(calls.iter().any(|c| c.starts_with("build image swarmctl/mcp-server:")), "{calls:?}"),
            Err(e) => {
                assert!(format!("{e:#}").contains("not static"), "{e:#}");
                assert!(!calls.iter().any(|c| c.starts_with("create")), "nothing deployed: {calls:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_registry_the_builtin_image_is_pushed_and_deployed_by_that_reference() {
        let fake = Fake::swarm(2);
        let reference = builtin_reference("10.99.0.1:5000").unwrap();
        fake.add_image(&reference);
        let mut source = ci();
        source.sets.push("registry=10.99.0.1:5000".into());
        docker_config_with_a_login();
        up(&fake, &source, &opts(), &Recording::default(), &CancellationToken::new()).await.unwrap();
        let calls = fake.calls();
        assert!(calls.contains(&format!("push {reference} with credentials for 10.99.0.1:5000")), "{calls:?}");
        assert!(calls.contains(&"create service swarmctl-ci_server".to_string()), "no login handed over: {calls:?}");
        let server = fake.spec("swarmctl-ci_server").unwrap();
        let image = server.task_template.unwrap().container_spec.unwrap().image.unwrap();
        assert_eq!(image, reference, "every node pulls it from the registry");

        // Asked to, the swarm gets the login with every service whose image is in that registry.
        source.sets.push("with_registry_auth=true".into());
        let said = Recording::default();
        up(&fake, &source, &opts(), &said, &CancellationToken::new()).await.unwrap();
        let calls = fake.calls();
        assert!(calls.contains(&"update service swarmctl-ci_server with credentials for 10.99.0.1:5000".to_string()));
        assert!(calls.contains(&"update service swarmctl-ci_lb".to_string()), "Traefik's is not there: {calls:?}");
        assert!(said.events().iter().all(|l| !l.contains("keeps no login")), "Docker Hub is not warned about");
        let before = fake.calls().len();
        up(&fake, &source, &opts(), &Recording::default(), &CancellationToken::new()).await.unwrap();
        assert!(fake.calls()[before..].iter().all(|c| !c.starts_with("update")), "nothing changed, nothing updated");
    }

    /// One docker config for the whole test binary (DOCKER_CONFIG is the process's), with a
    /// login for the registry these tests name.
    fn docker_config_with_a_login() {
        static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            // base64("swarmctl:pw")
            std::fs::write(
                dir.path().join("config.json"),
                r#"{"auths": {"10.99.0.1:5000": {"auth": "c3dhcm1jdGw6cHc="}}}"#,
            )
            .unwrap();
            std::env::set_var("DOCKER_CONFIG", dir.path());
            dir
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_that_cannot_be_placed_fails_fast_with_the_schedulers_reason() {
        let fake = Fake::swarm(0);
        fake.add_image(&image::builtin_tag().unwrap());
        fake.set_fate(
            "swarmctl-ci_server",
            Fate::Pending("no suitable node (scheduling constraints not satisfied on 1 node)".into()),
        );
        let err = up(&fake, &ci(), &opts(), &Recording::default(), &CancellationToken::new()).await.unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("did not converge") && text.contains("no suitable node"), "{text}");
        assert!(text.contains("check the placement constraints"), "the hint: {text}");
    }
}
