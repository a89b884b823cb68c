//! Exit codes and verdicts: what a run concluded, and the one mapping from that to the process
//! exit code that DESIGN.md gives (0 pass, 1 error, 2 usage, 3 failed, 4 generator, 130
//! interrupted).

use std::process::ExitCode;

use serde::{Deserialize, Serialize};

/// The process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Success: every threshold or SLO held.
    Ok,
    /// A runtime error.
    Error,
    /// Bad usage or configuration: a flag, a key, a file.
    Usage,
    /// A threshold or SLO failed (or, for `report compare`, a regression).
    Failed,
    /// The load generator could not keep its schedule: the figures describe it, not the target.
    Generator,
    /// Ctrl-C: the work stopped, drained and reported.
    Interrupted,
}

impl Code {
    /// The number the process exits with.
    pub fn number(self) -> u8 {
        match self {
            Code::Ok => 0,
            Code::Error => 1,
            Code::Usage => 2,
            Code::Failed => 3,
            Code::Generator => 4,
            Code::Interrupted => 130,
        }
    }

    /// The code a number stands for (what a worker process or load container exited with).
    pub fn of_number(n: i64) -> Code {
        match n {
            0 => Code::Ok,
            2 => Code::Usage,
            3 => Code::Failed,
            4 => Code::Generator,
            130 => Code::Interrupted,
            _ => Code::Error,
        }
    }
}

impl From<Code> for ExitCode {
    fn from(c: Code) -> ExitCode {
        ExitCode::from(c.number())
    }
}

/// A command line or input that cannot work, said with the flag or file and what is valid;
/// exits 2, as configuration errors do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    /// An error about `flag`: `--sessions must be at least 1`.
    pub fn flag(flag: &str, why: impl std::fmt::Display) -> Self {
        UsageError(format!("{flag}: {why}"))
    }
}

/// What a load run, a phase or a whole test concluded. Serialized as `pass`, `fail`,
/// `interrupted` and `error`, as results.json has always written them.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every threshold or SLO held.
    #[default]
    Pass,
    /// One did not.
    Fail,
    /// Ctrl-C stopped it; what ran up to then is reported.
    Interrupted,
    /// It could not go on (the reasons say why).
    Error,
}

impl Verdict {
    /// The verdict of a judged run: interrupted wins, then whether everything held.
    pub fn judged(interrupted: bool, pass: bool) -> Verdict {
        if interrupted {
            Verdict::Interrupted
        } else if pass {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    /// As results.json writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Interrupted => "interrupted",
            Verdict::Error => "error",
        }
    }

    /// In capitals, as reports headline it.
    pub fn upper(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Interrupted => "INTERRUPTED",
            Verdict::Error => "ERROR",
        }
    }

    /// True for `pass`.
    pub fn passed(self) -> bool {
        self == Verdict::Pass
    }

    /// The exit code this verdict gives a command.
    pub fn code(self) -> Code {
        match self {
            Verdict::Pass => Code::Ok,
            Verdict::Fail => Code::Failed,
            Verdict::Interrupted => Code::Interrupted,
            Verdict::Error => Code::Error,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_keep_their_results_json_spelling_and_exit_codes() {
        for (v, text, code) in [
            (Verdict::Pass, "\"pass\"", 0),
            (Verdict::Fail, "\"fail\"", 3),
            (Verdict::Interrupted, "\"interrupted\"", 130),
            (Verdict::Error, "\"error\"", 1),
        ] {
            assert_eq!(serde_json::to_string(&v).unwrap(), text);
            assert_eq!(serde_json::from_str::<Verdict>(text).unwrap(), v);
            assert_eq!(v.code().number(), code);
            assert_eq!(Code::of_number(i64::from(code)), v.code());
        }
        assert_eq!(Verdict::judged(true, true), Verdict::Interrupted);
        assert_eq!(Verdict::judged(false, false), Verdict::Fail);
        assert_eq!(Code::Usage.number(), 2);
        assert_eq!(Code::Generator.number(), 4);
        assert_eq!(Code::of_number(137), Code::Error, "a killed process is an error");
    }
}
