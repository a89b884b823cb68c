//! Stack configuration: reads the embedded default, a stack file and `--set` overrides, layers
//! them, and validates the result once, so that nothing downstream re-checks it.
//!
//! Precedence, lowest first: embedded `stacks/default.yaml` < stack file < `--set` < command
//! flags (applied by the commands themselves). A stack file is checked on its own first, so a
//! typo or a type error is reported with its file, line and column.

mod error;
mod model;
mod validate;

use std::path::Path;

use serde_yaml::{Mapping, Value};

pub use error::{ConfigError, Origin, ParseProblem, Problem};
pub use model::*;

/// The stack files shipped inside the binary, by name (`--stack NAME`).
pub const BUILTIN_STACKS: &[(&str, &str)] = &[
    ("default", include_str!("../../stacks/default.yaml")),
    ("ci", include_str!("../../stacks/ci.yaml")),
    ("erlmcp-100k", include_str!("../../stacks/erlmcp-100k.yaml")),
    ("local", include_str!("../../stacks/local.yaml")),
    ("100k-local", include_str!("../../stacks/100k-local.yaml")),
    ("python-sdk", include_str!("../../stacks/python-sdk.yaml")),
];

/// A stack file's text and where it came from.
#[derive(Debug, Clone)]
pub struct StackSource {
    /// For messages: the path as given, or `built-in stack NAME`.
    pub origin: Origin,
    /// The YAML text.
    pub text: String,
}

impl StackSource {
    /// Resolves `--stack`: a value that looks like a path (has a `/` or a `.yaml`/`.yml` suffix)
    /// is read from disk; anything else must be a built-in stack name.
    pub fn resolve(stack: &str) -> Result<Self, ConfigError> {
        let looks_like_path = stack.contains('/') || stack.ends_with(".yaml") || stack.ends_with(".yml");
        if looks_like_path {
            let text = std::fs::read_to_string(stack)
                .map_err(|error| ConfigError::Read { path: Path::new(stack).to_path_buf(), error })?;
            return Ok(StackSource { origin: Origin::File(stack.to_string()), text });
        }
        let (name, text) =
            BUILTIN_STACKS.iter().find(|(name, _)| *name == stack).ok_or_else(|| ConfigError::UnknownStack {
                name: stack.to_string(),
                available: BUILTIN_STACKS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            })?;
        Ok(StackSource { origin: Origin::File(format!("built-in stack {name}")), text: text.to_string() })
    }
}

/// Loads the stack named by `--stack` (default: the built-in `default`) with `--set` overrides.
pub fn load(stack: Option<&str>, sets: &[String]) -> Result<Config, ConfigError> {
    let source = StackSource::resolve(stack.unwrap_or("default"))?;
    load_source(&source, sets)
}

/// Loads a resolved stack source with `--set` overrides (the testable core of [`load`]).
pub fn load_source(source: &StackSource, sets: &[String]) -> Result<Config, ConfigError> {
    let default_text = BUILTIN_STACKS[0].1;
    let mut merged = parse_checked(default_text, &Origin::Default)?;
    let file_layer = parse_checked(&source.text, &source.origin)?;
    merge(&mut merged, file_layer.clone());

    let mut set_layers = Vec::with_capacity(sets.len());
    for arg in sets {
        let (key, value) = parse_set(arg)?;
        set_at(&mut merged, &key, value.clone());
        set_layers.push((key, arg.clone()));
    }

    let origin_of = |key: &str| -> Origin {
        if let Some((_, arg)) = set_layers
            .iter()
            .rev()
            .find(|(k, _)| key == k || key.starts_with(&format!("{k}.")) || k.starts_with(&format!("{key}.")))
        {
            return Origin::Set(arg.clone());
        }
        if lookup(&file_layer, key).is_some() {
            return source.origin.clone();
        }
        Origin::Default
    };

    let config: Config = serde_path_to_error::deserialize(merged).map_err(|err| {
        let (key, message, suggestion) = describe(err.path().to_string(), err.inner().to_string());
        ConfigError::Parse(Box::new(ParseProblem {
            origin: origin_of(&key),
            line: None,
            column: None,
            key,
            message,
            suggestion,
        }))
    })?;

    let problems: Vec<Problem> = validate::check(&config)
        .into_iter()
        .map(|v| {
            // A clash between two keys is reported at the one the user set, not at the
            // default it collides with.
            let (key, origin) = match (&v.related, origin_of(&v.key)) {
                (Some(other), Origin::Default) if origin_of(other) != Origin::Default => {
                    (other.clone(), origin_of(other))
                }
                (_, origin) => (v.key.clone(), origin),
            };
            Problem { origin, key, message: v.message }
        })
        .collect();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid { problems })
    }
}

/// Parses one layer and checks it against the typed model on its own, so that unknown keys
/// and type errors point at the line that has them.
fn parse_checked(text: &str, origin: &Origin) -> Result<Value, ConfigError> {
    if text.trim().is_empty() {
        return Ok(Value::Mapping(Mapping::new()));
    }
    let located = |err: &serde_yaml::Error| err.location().map(|l| (l.line(), l.column()));
    let checked: Result<Config, _> = serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text));
    if let Err(err) = checked {
        let loc = located(err.inner());
        let (key, message, suggestion) = describe(err.path().to_string(), err.inner().to_string());
        return Err(ConfigError::Parse(Box::new(ParseProblem {
            origin: origin.clone(),
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            key,
            message,
            suggestion,
        })));
    }
    let value: Value = serde_yaml::from_str(text).map_err(|err| {
        ConfigError::Parse(Box::new(ParseProblem {
            origin: origin.clone(),
            line: located(&err).map(|l| l.0),
            column: located(&err).map(|l| l.1),
            key: String::new(),
            message: err.to_string(),
            suggestion: None,
        }))
    })?;
    match value {
        Value::Mapping(_) => Ok(value),
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        _ => Err(ConfigError::Parse(Box::new(ParseProblem {
            origin: origin.clone(),
            line: Some(1),
            column: Some(1),
            key: String::new(),
            message: "a stack file must be a mapping of keys (name, server, lb, …)".into(),
            suggestion: None,
        }))),
    }
}

/// Turns a serde error into (full key, message without the location suffix, suggestion).
fn describe(path: String, message: String) -> (String, String, Option<String>) {
    // serde_yaml appends " at line L column C"; the location is reported separately.
    let message = crate::yaml::clean_message(&message);
    let path = if path == "." { String::new() } else { path };
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let unknown = message.starts_with("unknown field") || message.starts_with("unknown variant");
    if !unknown || quoted.is_empty() {
        return (path, message, None);
    }
    let wrong = quoted[0];
    let suggestion = quoted[1..]
        .iter()
        .map(|c| (strsim::jaro_winkler(wrong, c), *c))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string());
    if message.starts_with("unknown field") {
        // For an unknown field, serde_path_to_error's path stops at (or includes) the key.
        let key = if path.is_empty() {
            wrong.to_string()
        } else if path.ends_with(wrong) {
            path.clone()
        } else {
            format!("{path}.{wrong}")
        };
        let parent = key.rsplit_once('.').map(|(p, _)| format!("{p}.")).unwrap_or_default();
        let valid = quoted[1..].join(", ");
        let message = if valid.is_empty() {
            format!("unknown key `{wrong}`")
        } else {
            format!("unknown key `{wrong}`; valid keys here: {valid}")
        };
        (key, message, suggestion.map(|s| format!("{parent}{s}")))
    } else {
        (path, message, suggestion)
    }
}

/// Parses `a.b.c=value`; the value is read as YAML (`3`, `true`, `null`, `[a, b]`), falling
/// back to a plain string.
fn parse_set(arg: &str) -> Result<(String, Value), ConfigError> {
    let (key, raw) = arg.split_once('=').ok_or_else(|| ConfigError::SetSyntax { arg: arg.into() })?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|part| part.is_empty()) {
        return Err(ConfigError::SetSyntax { arg: arg.into() });
    }
    let value = serde_yaml::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    Ok((key.to_string(), value))
}

/// Deep-merges `layer` into `base`: mappings merge key by key, everything else is replaced,
/// and a `null` removes the key (so the model's default applies).
fn merge(base: &mut Value, layer: Value) {
    match (base, layer) {
        (Value::Mapping(base), Value::Mapping(layer)) => {
            for (k, v) in layer {
                if v.is_null() {
                    base.remove(&k);
                    continue;
                }
                match base.get_mut(&k) {
                    Some(existing) if existing.is_mapping() && v.is_mapping() => merge(existing, v),
                    _ => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, layer) => *base = layer,
    }
}

fn set_at(root: &mut Value, key: &str, value: Value) {
    let mut layer = value;
    for part in key.rsplit('.') {
        let mut m = Mapping::new();
        m.insert(Value::String(part.to_string()), layer);
        layer = Value::Mapping(m);
    }
    merge(root, layer);
}

fn lookup<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(root, |v, part| v.get(part))
}

#[cfg(test)]
mod tests;
