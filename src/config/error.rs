//! Configuration errors: each names where the bad value came from (file and line, or the
//! `--set` flag), the key, and what would be valid.

use std::fmt;
use std::path::PathBuf;

/// Where a piece of configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The embedded default stack.
    Default,
    /// A stack file, named as the user gave it (or `built-in stack NAME`).
    File(String),
    /// A `--set key=value` flag.
    Set(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default stack"),
            Origin::File(name) => f.write_str(name),
            Origin::Set(arg) => write!(f, "--set {arg}"),
        }
    }
}

/// One semantic problem with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `server.replicas`.
    pub key: String,
    /// What is wrong and what would be valid.
    pub message: String,
    /// Where the offending value was set.
    pub origin: Origin,
}

/// Everything that can be wrong with a stack configuration. All map to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The stack file could not be read.
    #[error("cannot read stack file {path}: {error}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// The I/O error, said in the message (not chained as a source, which would say it
        /// twice).
        error: std::io::Error,
    },
    /// `--stack NAME` names no built-in stack and no file.
    #[error("unknown stack `{name}`: built-in stacks are {available}; or give a path to a .yaml file")]
    UnknownStack {
        /// The name given.
        name: String,
        /// The built-in names, comma separated.
        available: String,
    },
    /// The YAML is malformed, a key is unknown, or a value has the wrong type.
    #[error("{0}")]
    Parse(Box<ParseProblem>),
    /// A `--set` argument is not `key.path=value`.
    #[error("--set {arg}: expected KEY=VALUE with a dotted key, e.g. --set server.replicas=3")]
    SetSyntax {
        /// The argument given.
        arg: String,
    },
    /// Values that parse but make no sense.
    #[error("invalid stack configuration:{}", .problems.iter().map(|p| format!("\n  {}: {}: {}", p.origin, p.key, p.message)).collect::<String>())]
    Invalid {
        /// Every problem found, not just the first.
        problems: Vec<Problem>,
    },
}

/// Where and why a stack layer failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{location}: {key_part}{message}{hint}",
    location = .line.map(|l| format!(":{l}:{}", .column.unwrap_or(1))).unwrap_or_default(),
    key_part = if .key.is_empty() { String::new() } else { format!("{}: ", .key) },
    hint = .suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
pub struct ParseProblem {
    /// Where the text came from.
    pub origin: Origin,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted key path, when known.
    pub key: String,
    /// The parser's message.
    pub message: String,
    /// The nearest valid key or value, for a typo.
    pub suggestion: Option<String>,
}
