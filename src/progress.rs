//! Progress of long work, behind one interface: bars with totals and time left on a terminal
//! (indicatif), plain lines off one (what logs and CI read), nothing with `-q`, and a
//! recording for tests. Work reports what it knows (a total, where it stands); how that is
//! shown is the reporter's business.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

/// Where long work reports.
pub trait Progress: Send + Sync {
    /// Work of a known size begins under `key`: `total` units of `unit` (`s`, `replicas`, …);
    /// 0 when the size is not known (a spinner).
    fn begin(&self, key: &str, label: &str, total: u64, unit: &str);
    /// Where it stands, with a short status.
    fn set(&self, key: &str, pos: u64, status: &str);
    /// It ended, with a closing line.
    fn end(&self, key: &str, line: &str);
    /// A line worth keeping wherever progress goes.
    fn say(&self, line: &str);
    /// A periodic status line: printed where there are no bars (the bars show it already).
    fn tick(&self, line: &str);
}

/// A shared reporter.
pub type Reporter = Arc<dyn Progress>;

/// The reporter for stderr: bars on a terminal, lines elsewhere, nothing when `quiet`.
pub fn stderr(quiet: bool) -> Reporter {
    if quiet {
        Arc::new(Quiet)
    } else if std::io::stderr().is_terminal() && std::env::var_os("TERM").map_or(true, |t| t != "dumb") {
        Arc::new(Bars::default())
    } else {
        Arc::new(Lines)
    }
}

/// Nothing at all (`-q`).
#[derive(Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn begin(&self, _: &str, _: &str, _: u64, _: &str) {}
    fn set(&self, _: &str, _: u64, _: &str) {}
    fn end(&self, _: &str, _: &str) {}
    fn say(&self, _: &str) {}
    fn tick(&self, _: &str) {}
}

/// Plain lines on stderr: a line when work begins and ends, every `say` and `tick`.
#[derive(Debug, Default)]
pub struct Lines;

impl Progress for Lines {
    fn begin(&self, _: &str, label: &str, total: u64, unit: &str) {
        if total > 0 {
            eprintln!("{label} ({total} {unit})");
        } else {
            eprintln!("{label}");
        }
    }

    fn set(&self, _: &str, _: u64, _: &str) {}

    fn end(&self, _: &str, line: &str) {
        if !line.is_empty() {
            eprintln!("{line}");
        }
    }

    fn say(&self, line: &str) {
        eprintln!("{line}");
    }

    fn tick(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// indicatif bars on a terminal: one per piece of work, with its total, rate and time left.
#[derive(Default)]
pub struct Bars {
    multi: indicatif::MultiProgress,
    bars: Mutex<HashMap<String, indicatif::ProgressBar>>,
}

impl Progress for Bars {
    fn begin(&self, key: &str, label: &str, total: u64, unit: &str) {
        // Attached to the multi-bar before anything is set on it: a bar still on its own
        // draws straight to stderr, and that line stays behind in the scrollback.
        let hidden = indicatif::ProgressDrawTarget::hidden();
        let bar = self.multi.add(indicatif::ProgressBar::with_draw_target((total > 0).then_some(total), hidden));
        if total > 0 {
            let template =
                format!("{{prefix:24}} [{{bar:24}}] {{pos}}/{{len}} {unit}  {{elapsed}} ~{{eta}} left  {{msg}}");
            bar.set_style(
                indicatif::ProgressStyle::with_template(&template).expect("a valid template").progress_chars("=> "),
            );
        } else {
            bar.set_style(
                indicatif::ProgressStyle::with_template("{prefix:24} {spinner} {elapsed}  {msg}")
                    .expect("a valid template"),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
        }
        bar.set_prefix(label.to_string());
        if let Some(old) = self.bars.lock().unwrap_or_else(|p| p.into_inner()).insert(key.into(), bar) {
            old.finish_and_clear();
        }
    }

    fn set(&self, key: &str, pos: u64, status: &str) {
        if let Some(b) = self.bars.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
            b.set_position(pos.min(b.length().unwrap_or(u64::MAX)));
            b.set_message(status.to_string());
        }
    }

    fn end(&self, key: &str, line: &str) {
        if let Some(b) = self.bars.lock().unwrap_or_else(|p| p.into_inner()).remove(key) {
            b.finish_and_clear();
        }
        if !line.is_empty() {
            let _ = self.multi.println(line);
        }
    }

    fn say(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    fn tick(&self, _: &str) {}
}

/// Everything reported, in order, one line each (`begin up 3 replicas`, `set up 2 …`): for
/// tests of what long work tells its user.
#[derive(Debug, Default)]
pub struct Recording {
    events: Mutex<Vec<String>>,
}

impl Recording {
    /// The events so far.
    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn push(&self, e: String) {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }
}

impl Progress for Recording {
    fn begin(&self, key: &str, label: &str, total: u64, unit: &str) {
        self.push(format!("begin {key} {total} {unit}: {label}"));
    }

    fn set(&self, key: &str, pos: u64, status: &str) {
        self.push(format!("set {key} {pos}: {status}"));
    }

    fn end(&self, key: &str, line: &str) {
        self.push(format!("end {key}: {line}"));
    }

    fn say(&self, line: &str) {
        self.push(format!("say {line}"));
    }

    fn tick(&self, line: &str) {
        self.push(format!("tick {line}"));
    }
}
