//! Turning serde_yaml's error text into messages for people: the location and the path are
//! reported separately by the callers, so they are cut from the text, and Rust type names
//! become words.

/// A YAML scalar that stands for a string where compose and stack files allow any scalar
/// (`ERL_MAX_PORTS: 262144`, `TCP_KEEPALIVE: true`).
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    S(String),
    I(i64),
    F(f64),
    B(bool),
}

impl From<Scalar> for String {
    fn from(s: Scalar) -> String {
        match s {
            Scalar::S(s) => s,
            Scalar::I(i) => i.to_string(),
            Scalar::F(f) => f.to_string(),
            Scalar::B(b) => b.to_string(),
        }
    }
}

/// Strips serde_yaml's " at line L column C" suffix and its leading "path: ", and names types
/// the way a stack file's author thinks of them.
pub(crate) fn clean_message(message: &str) -> String {
    let mut message = match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    };
    if let Some((head, rest)) = message.split_once(": ") {
        if !head.is_empty() && !head.contains(char::is_whitespace) {
            message = rest.to_string();
        }
    }
    for (rust, human) in [
        ("expected u16", "expected a port number from 1 to 65535"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
    ] {
        message = message.replace(rust, human);
    }
    if let Some(i) = message.find("expected struct ") {
        message = format!("{}expected a mapping of keys", &message[..i]);
    }
    message
}

#[cfg(test)]
mod tests {
    #[test]
    fn cleans_location_path_and_type_names() {
        assert_eq!(
            super::clean_message("server.replicas: invalid type: string \"x\", expected u32 at line 3 column 13"),
            "invalid type: string \"x\", expected a whole number"
        );
        assert_eq!(super::clean_message("unknown field `a`"), "unknown field `a`");
        assert_eq!(
            super::clean_message("server: invalid type: sequence, expected struct Server"),
            "invalid type: sequence, expected a mapping of keys"
        );
    }
}
