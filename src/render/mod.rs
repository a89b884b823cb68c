//! Render: a validated [`Config`] → the compose file `stack.yml` plus the configuration files it
//! references (Traefik, Prometheus, alert rules, Grafana provisioning), through tera templates
//! embedded in the binary and optionally overridden from a folder.
//!
//! The rendered compose file is parsed back into the typed compose model before anything uses
//! it, so a template that renders invalid or unsupported YAML fails here, not at deploy time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tera::Tera;

use crate::compose::{self, Compose};
use crate::config::{Config, LbKind};

/// Embedded templates, by the name an override folder must use.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("macros.tera", include_str!("../../templates/macros.tera")),
    ("stack.yml", include_str!("../../templates/stack.yml")),
    ("traefik.yml", include_str!("../../templates/traefik.yml")),
    ("haproxy.cfg", include_str!("../../templates/haproxy.cfg")),
    ("prometheus.yml", include_str!("../../templates/prometheus.yml")),
    ("alerts.yml", include_str!("../../templates/alerts.yml")),
    ("grafana/datasource.yml", include_str!("../../templates/grafana/datasource.yml")),
    ("grafana/dashboards.yml", include_str!("../../templates/grafana/dashboards.yml")),
    ("grafana/mcp-overview.json", include_str!("../../templates/grafana/mcp-overview.json")),
    ("grafana/load-balancer.json", include_str!("../../templates/grafana/load-balancer.json")),
    ("grafana/load-balancer-haproxy.json", include_str!("../../templates/grafana/load-balancer-haproxy.json")),
];

/// Where the `builtin` server image comes from: the swarmctl binary packed `FROM scratch`.
pub const BUILTIN_IMAGE_REPO: &str = "swarmctl/mcp-server";

/// Errors while loading or rendering templates.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// An override folder could not be read.
    #[error("cannot read template {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error, said in the message (not chained as a source, which would say it
        /// twice).
        error: std::io::Error,
    },
    /// An override folder has a file that replaces no template (most likely a typo).
    #[error("{path}: not a swarmctl template; the names that can be overridden are: {valid}")]
    UnknownTemplate {
        /// The file.
        path: PathBuf,
        /// Valid names.
        valid: String,
    },
    /// Tera could not parse or render a template.
    #[error("template {name}: {message}")]
    Template {
        /// The template name.
        name: String,
        /// Tera's message with its causes.
        message: String,
    },
    /// The rendered compose file is not a compose file swarmctl can deploy.
    #[error("the rendered stack.yml is not valid: {0}")]
    Compose(#[from] compose::ComposeError),
    /// A rendered YAML config file does not parse.
    #[error("the rendered {name} is not valid YAML: {message}")]
    Yaml {
        /// The file.
        name: String,
        /// The parser's message.
        message: String,
    },
}

/// The template set: the embedded templates, each possibly replaced by a file from a folder.
pub struct Templates {
    tera: Tera,
}

impl Templates {
    /// The embedded templates only.
    pub fn embedded() -> Result<Self, RenderError> {
        Self::build(TEMPLATES.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect())
    }

    /// The embedded templates, with those found in `dir` (same relative names) replacing them.
    pub fn with_overrides(dir: &Path) -> Result<Self, RenderError> {
        let mut sources: BTreeMap<String, String> =
            TEMPLATES.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        for path in files_under(dir)? {
            let name = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            if !sources.contains_key(&name) {
                return Err(RenderError::UnknownTemplate {
                    path,
                    valid: TEMPLATES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
                });
            }
            let text =
                std::fs::read_to_string(&path).map_err(|error| RenderError::Read { path: path.clone(), error })?;
            sources.insert(name, text);
        }
        Self::build(sources.into_iter().collect())
    }

    fn build(sources: Vec<(String, String)>) -> Result<Self, RenderError> {
        let mut tera = Tera::default();
        // Nothing we render is HTML; escaping would corrupt YAML and JSON.
        tera.autoescape_on(vec![]);
        tera.add_raw_templates(sources)
            .map_err(|e| RenderError::Template { name: "(loading)".into(), message: chain(&e) })?;
        Ok(Templates { tera })
    }

    fn render(&self, name: &str, ctx: &tera::Context) -> Result<String, RenderError> {
        self.tera.render(name, ctx).map_err(|e| RenderError::Template { name: name.into(), message: chain(&e) })
    }
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>, RenderError> {
    let read = |p: &Path| std::fs::read_dir(p).map_err(|error| RenderError::Read { path: p.into(), error });
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in read(&d)? {
            let path = entry.map_err(|error| RenderError::Read { path: d.clone(), error })?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Inputs that are not configuration: they come from the environment of the run.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// swarmctl's version, stamped into headers and the `builtin` image tag.
    pub version: String,
    /// Grafana's admin password (needed only when Grafana is enabled).
    pub grafana_admin_password: Option<String>,
    /// The `builtin` image's reference; `None`: `swarmctl/mcp-server:<version>`. `up` passes
    /// the tag with the binary's content hash, so a rebuilt binary is a new image.
    pub builtin_image: Option<String>,
}

/// A file rendered next to `stack.yml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Content.
    pub content: String,
    /// A secret: written with mode 0600, never printed.
    pub secret: bool,
}

/// Everything `render` produced: the compose text, its parsed model and the files beside it.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// `stack.yml` as text.
    pub stack_yml: String,
    /// `stack.yml` parsed back and checked.
    pub compose: Compose,
    /// Files referenced by the compose file, by path relative to it.
    pub files: BTreeMap<String, RenderedFile>,
}

#[derive(Serialize)]
struct ServerView {
    image: String,
    command: Vec<String>,
    healthcheck: Vec<String>,
}

/// What the HAProxy template needs beyond the config: its timeouts in milliseconds (HAProxy
/// reads no `1m30s`) and how many replicas each backend may hold.
#[derive(Serialize)]
struct HaproxyView {
    connect_ms: u128,
    /// 0: no limit, HAProxy's own meaning of 0 too.
    request_ms: u128,
    keep_alive_ms: u128,
    slots: u32,
}

/// Server slots per backend: the replicas, with room for scaling and start-first updates,
/// never fewer than 64 (a slot without a task costs nothing).
fn haproxy_slots(c: &Config) -> u32 {
    (c.server.replicas * 4).max(64)
}

#[derive(Serialize)]
struct Route {
    id: &'static str,
    rule: String,
    entrypoint: &'static str,
    service: &'static str,
    retry: bool,
}

#[derive(Serialize)]
struct LbService {
    id: &'static str,
    port: u16,
    sticky: bool,
}

#[derive(Serialize)]
struct FileRef {
    name: String,
    file: String,
}

#[derive(Serialize)]
struct Dashboard {
    key: String,
    file: String,
}

/// Renders the whole stack.
pub fn render(config: &Config, templates: &Templates, inputs: &Inputs) -> Result<Rendered, RenderError> {
    let c = config;
    let name = c.name.as_str();
    let mut ctx = tera::Context::new();
    ctx.insert("version", &inputs.version);
    ctx.insert("name", name);
    ctx.insert("c", c);
    ctx.insert("traefik", &crate::config::TRAEFIK_LISTENS);
    ctx.insert("net_mcp", &format!("{name}_{}", c.networks.mcp.name));
    ctx.insert("net_monitoring", &format!("{name}_{}", c.networks.monitoring.name));
    ctx.insert("networks", &[&c.networks.mcp, &c.networks.monitoring]);
    ctx.insert("lb_refresh_seconds", &c.lb.refresh.0.as_secs().max(1));
    ctx.insert("lb_dial_timeout", &c.lb.dial_timeout());
    let t = &c.lb.transport;
    ctx.insert(
        "haproxy",
        &HaproxyView {
            connect_ms: c.lb.dial_timeout().0.as_millis().max(1),
            request_ms: t.read_timeout.0.as_millis(),
            keep_alive_ms: t.idle_timeout.0.as_millis().max(1),
            slots: haproxy_slots(c),
        },
    );
    ctx.insert("error_budget", &round6(1.0 - c.slo.success_ratio));
    ctx.insert("error_budget_percent", &round6((1.0 - c.slo.success_ratio) * 100.0));
    ctx.insert("p99_seconds", &round6(c.slo.p99.0.as_secs_f64()));
    let connection_limit = c.server.ulimits.get("nofile").copied().unwrap_or(20_000);
    ctx.insert("connection_limit", &connection_limit);
    ctx.insert("connection_alert_threshold", &(connection_limit * 9 / 10));
    ctx.insert("server", &server_view(c, inputs));
    let (routes, services) = routes(c);
    ctx.insert("http_routes", &routes);
    ctx.insert("http_services", &services);

    // Config files first: their content hashes go into the names the compose file uses.
    let mut files: BTreeMap<String, RenderedFile> = BTreeMap::new();
    let mut configs: BTreeMap<String, FileRef> = BTreeMap::new();
    let mut dashboards = Vec::new();
    let mut add_config = |key: &str,
                          template: &str,
                          file: &str,
                          files: &mut BTreeMap<String, RenderedFile>|
     -> Result<(), RenderError> {
        let content = templates.render(template, &ctx)?;
        check_syntax(file, &content)?;
        configs.insert(key.into(), FileRef { name: hashed_name(name, key, &content), file: format!("./{file}") });
        files.insert(file.into(), RenderedFile { content, secret: false });
        Ok(())
    };
    match c.lb.kind {
        LbKind::Traefik => add_config("traefik_yml", "traefik.yml", "traefik.yml", &mut files)?,
        LbKind::Haproxy => add_config("haproxy_cfg", "haproxy.cfg", "haproxy.cfg", &mut files)?,
    }
    if c.prometheus.enabled {
        add_config("prometheus_yml", "prometheus.yml", "prometheus.yml", &mut files)?;
        add_config("alerts_yml", "alerts.yml", "alerts.yml", &mut files)?;
    }
    let mut secrets: BTreeMap<String, FileRef> = BTreeMap::new();
    if c.grafana.enabled {
        add_config("grafana_datasource", "grafana/datasource.yml", "grafana/datasource.yml", &mut files)?;
        add_config("grafana_dashboards", "grafana/dashboards.yml", "grafana/dashboards.yml", &mut files)?;
        // The fleet overview reads the server's own mcp_* metrics: without them it would only
        // ever be empty.
        let lb = match c.lb.kind {
            LbKind::Traefik => "load-balancer",
            LbKind::Haproxy => "load-balancer-haproxy",
        };
        let overview = c.server.metrics_port.map(|_| "mcp-overview");
        let boards: Vec<&str> = overview.into_iter().chain([lb]).collect();
        for board in boards {
            let key = format!("grafana_dashboard_{}", board.replace('-', "_"));
            let file = format!("grafana/{board}.json");
            add_config(&key, &file, &file, &mut files)?;
            dashboards.push(Dashboard { key, file: format!("{board}.json") });
        }
        let password = inputs.grafana_admin_password.clone().unwrap_or_default();
        let file = "secrets/grafana_admin_password".to_string();
        secrets.insert(
            "grafana_admin_password".into(),
            FileRef { name: hashed_name(name, "grafana_admin_password", &password), file: format!("./{file}") },
        );
        files.insert(file, RenderedFile { content: password, secret: true });
    }
    ctx.insert("configs", &configs);
    ctx.insert("secrets", &secrets);
    ctx.insert("dashboards", &dashboards);

    let stack_yml = templates.render("stack.yml", &ctx)?;
    let compose = compose::parse(&stack_yml)?;
    Ok(Rendered { stack_yml, compose, files })
}

/// `<stack>_<key>_<first 10 hex digits of sha256(content)>`: a new name whenever the content
/// changes, since swarm refuses to change a config's data.
pub fn hashed_name(stack: &str, key: &str, content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{stack}_{key}_{hex}")
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn check_syntax(file: &str, content: &str) -> Result<(), RenderError> {
    // HAProxy's own syntax is checked by HAProxy (tests/it render the file and run `haproxy -c`).
    if file.ends_with(".cfg") {
        return Ok(());
    }
    let result = if file.ends_with(".json") {
        serde_json::from_str::<serde_json::Value>(content).map(|_| ()).map_err(|e| e.to_string())
    } else {
        serde_yaml::from_str::<serde_yaml::Value>(content).map(|_| ()).map_err(|e| e.to_string())
    };
    result.map_err(|message| RenderError::Yaml { name: file.into(), message })
}

/// For `builtin`, the image is this binary and its arguments follow from the transports; the
/// healthcheck probes the metrics listener's `/health` with the binary itself (a scratch image
/// has no curl).
fn server_view(c: &Config, inputs: &Inputs) -> ServerView {
    let s = &c.server;
    if s.image != "builtin" {
        return ServerView {
            image: s.image.clone(),
            command: s.command.clone(),
            healthcheck: s.healthcheck.test.clone(),
        };
    }
    // Checked with the stack file: the builtin image has both.
    let metrics_port = s.metrics_port.expect("validated: the builtin server has a metrics port");
    let health_path = s.health_path.clone().expect("validated: the builtin server has a health path");
    let mut command = s.command.clone();
    if command.is_empty() {
        command.push("serve".into());
        let t = &s.transports;
        if let Some(h) = &t.http {
            command.extend(["--http".into(), format!("0.0.0.0:{}", h.port), "--http-path".into(), h.path.clone()]);
        }
        if let Some(h) = &t.sse {
            command.extend(["--sse".into(), format!("0.0.0.0:{}", h.port), "--sse-path".into(), h.path.clone()]);
        }
        if let Some(w) = &t.ws {
            command.extend(["--ws".into(), format!("0.0.0.0:{}", w.port), "--ws-path".into(), w.path.clone()]);
            if w.newline {
                command.push("--ws-newline".into());
            }
        }
        if let Some(tcp) = &t.tcp {
            command.extend(["--tcp".into(), format!("0.0.0.0:{}", tcp.port)]);
        }
        command.extend([
            "--metrics".into(),
            format!("0.0.0.0:{metrics_port}"),
            "--health-path".into(),
            health_path.clone(),
        ]);
    }
    let healthcheck = if s.healthcheck.test.is_empty() {
        vec!["CMD".into(), "/swarmctl".into(), "probe".into(), format!("http://127.0.0.1:{metrics_port}{health_path}")]
    } else {
        s.healthcheck.test.clone()
    };
    let image = inputs.builtin_image.clone().unwrap_or_else(|| format!("{BUILTIN_IMAGE_REPO}:{}", inputs.version));
    ServerView { image, command, healthcheck }
}

/// Traefik routers and services for the server's HTTP-based transports.
fn routes(c: &Config) -> (Vec<Route>, Vec<LbService>) {
    let t = &c.server.transports;
    let mut routes = Vec::new();
    let mut services = Vec::new();
    if let Some(h) = &t.http {
        routes.push(Route {
            id: "http",
            rule: format!("PathPrefix(`{}`)", h.path),
            entrypoint: "web",
            service: "http",
            retry: true,
        });
        if let Some(path) = &c.server.health_path {
            routes.push(Route {
                id: "health",
                rule: format!("Path(`{path}`)"),
                entrypoint: "web",
                service: "http",
                retry: true,
            });
        }
        services.push(LbService { id: "http", port: h.port, sticky: true });
    }
    if let Some(h) = &t.sse {
        routes.push(Route {
            id: "sse",
            rule: format!("PathPrefix(`{}`)", h.path),
            entrypoint: "web",
            service: "sse",
            retry: true,
        });
        services.push(LbService { id: "sse", port: h.port, sticky: true });
    }
    if let Some(w) = &t.ws {
        routes.push(Route {
            id: "ws",
            rule: format!("PathPrefix(`{}`)", w.path),
            entrypoint: "websocket",
            service: "ws",
            retry: false,
        });
        services.push(LbService { id: "ws", port: w.port, sticky: false });
    }
    (routes, services)
}

/// Writes a rendered stack to `dir`: `stack.yml` and every file beside it (secrets 0600).
pub fn write_to(rendered: &Rendered, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    std::fs::create_dir_all(dir)?;
    let stack = dir.join("stack.yml");
    std::fs::write(&stack, &rendered.stack_yml)?;
    written.push(stack);
    for (rel, file) in &rendered.files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &file.content)?;
        if file.secret {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        written.push(path);
    }
    Ok(written)
}
