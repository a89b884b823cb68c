//! Fault injection for the reference server: added latency, injected errors, stalls, dropped
//! connections, slow start and a connection cap. Each is set by a flag or an environment
//! variable, so a stack file can turn them on per service.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::units::Duration as Dur;

/// How much latency to add to every request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Latency {
    /// None.
    #[default]
    None,
    /// Always the same.
    Fixed(Duration),
    /// Uniform between the two bounds.
    Uniform(Duration, Duration),
    /// Log-normal with this median and shape σ (a long tail, like real services).
    LogNormal {
        /// The median.
        median: Duration,
        /// σ of the underlying normal distribution.
        sigma: f64,
    },
}

const LATENCY_HELP: &str = "use 20ms, fixed:20ms, uniform:10ms..50ms or lognormal:20ms,0.5";

impl FromStr for Latency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: String| format!("invalid latency `{s}`: {why}; {LATENCY_HELP}");
        let dur = |t: &str| t.trim().parse::<Dur>().map(|d| d.0).map_err(|e| bad(e.to_string()));
        let (kind, rest) = s.split_once(':').unwrap_or(("fixed", s));
        match kind {
            "none" | "off" => Ok(Latency::None),
            "fixed" => Ok(Latency::Fixed(dur(rest)?)),
            "uniform" => {
                let (a, b) = rest.split_once("..").ok_or_else(|| bad("missing `..`".into()))?;
                let (a, b) = (dur(a)?, dur(b)?);
                if b < a {
                    return Err(bad("the upper bound is below the lower one".into()));
                }
                Ok(Latency::Uniform(a, b))
            }
            "lognormal" => {
                let (m, sigma) = rest.split_once(',').ok_or_else(|| bad("missing `,σ`".into()))?;
                let sigma: f64 = sigma.trim().parse().map_err(|_| bad("σ is not a number".into()))?;
                if !(0.0..=5.0).contains(&sigma) {
                    return Err(bad("σ must be from 0 to 5".into()));
                }
                Ok(Latency::LogNormal { median: dur(m)?, sigma })
            }
            other => Err(bad(format!("unknown kind `{other}`"))),
        }
    }
}

/// A recurring window in which the server answers nothing: `STALL/PERIOD[@OFFSET]`, e.g.
/// `1s/60s@2s` stalls from 2 s to 3 s after start, then every 60 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// How long each stall lasts.
    pub length: Duration,
    /// Time between stall starts.
    pub period: Duration,
    /// When the first stall starts, after server start.
    pub offset: Duration,
}

impl FromStr for Stall {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid stall `{s}`: {why}; use LENGTH/PERIOD[@OFFSET], e.g. 1s/60s@2s");
        let (main, offset) = s.split_once('@').unwrap_or((s, "0s"));
        let (length, period) = main.split_once('/').ok_or_else(|| bad("missing `/`"))?;
        let p = |t: &str| t.trim().parse::<Dur>().map(|d| d.0).map_err(|_| bad("not a duration"));
        let stall = Stall { length: p(length)?, period: p(period)?, offset: p(offset)? };
        if stall.period.is_zero() || stall.length >= stall.period {
            return Err(bad("the stall must be shorter than its period"));
        }
        Ok(stall)
    }
}

/// The faults one server process injects.
#[derive(Debug)]
pub struct Faults {
    /// Added latency.
    pub latency: Latency,
    /// Share of requests answered with an injected JSON-RPC error (-32603).
    pub error_ratio: f64,
    /// Share of requests whose connection is closed instead of answered.
    pub drop_ratio: f64,
    /// A recurring stall.
    pub stall: Option<Stall>,
    /// Unhealthy (503 on /health) for this long after start.
    pub slow_start: Duration,
    /// Refuse connections beyond this many open ones.
    pub max_connections: Option<usize>,
    started: Instant,
    rng: AtomicU64,
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Answer normally (after the delay).
    Answer(Duration),
    /// Answer with an injected error (after the delay).
    Error(Duration),
    /// Close the connection without answering.
    Drop,
}

impl Faults {
    /// Faults from settings; `seed` makes random choices reproducible.
    pub fn new(
        latency: Latency,
        error_ratio: f64,
        drop_ratio: f64,
        stall: Option<Stall>,
        slow_start: Duration,
        max_connections: Option<usize>,
        seed: u64,
    ) -> Self {
        Faults {
            latency,
            error_ratio,
            drop_ratio,
            stall,
            slow_start,
            max_connections,
            started: Instant::now(),
            rng: AtomicU64::new(seed),
        }
    }

    /// No faults at all.
    pub fn none() -> Self {
        Self::new(Latency::None, 0.0, 0.0, None, Duration::ZERO, None, 1)
    }

    /// True while the slow-start window lasts.
    pub fn starting(&self) -> bool {
        self.started.elapsed() < self.slow_start
    }

    /// Decides the fate of a request arriving now.
    pub fn verdict(&self) -> Verdict {
        self.verdict_at(self.started.elapsed())
    }

    fn verdict_at(&self, since_start: Duration) -> Verdict {
        if self.drop_ratio > 0.0 && self.uniform() < self.drop_ratio {
            return Verdict::Drop;
        }
        let mut delay = match self.latency {
            Latency::None => Duration::ZERO,
            Latency::Fixed(d) => d,
            Latency::Uniform(a, b) => a + (b - a).mul_f64(self.uniform()),
            Latency::LogNormal { median, sigma } => {
                // Box-Muller: one standard normal sample from two uniforms.
                let (u1, u2) = (self.uniform().max(f64::MIN_POSITIVE), self.uniform());
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                median.mul_f64((sigma * z).exp().min(1e4))
            }
        };
        if let Some(stall) = self.stall {
            if since_start >= stall.offset {
                let into = (since_start - stall.offset).as_nanos() % stall.period.as_nanos();
                let into = Duration::from_nanos(into as u64);
                if into < stall.length {
                    delay += stall.length - into;
                }
            }
        }
        if self.error_ratio > 0.0 && self.uniform() < self.error_ratio {
            Verdict::Error(delay)
        } else {
            Verdict::Answer(delay)
        }
    }

    /// A uniform sample in [0, 1) from a lock-free SplitMix64 stream.
    fn uniform(&self) -> f64 {
        let mut z = self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_specs_parse() {
        assert_eq!("20ms".parse::<Latency>().unwrap(), Latency::Fixed(Duration::from_millis(20)));
        assert_eq!("fixed:1s".parse::<Latency>().unwrap(), Latency::Fixed(Duration::from_secs(1)));
        assert_eq!(
            "uniform:10ms..50ms".parse::<Latency>().unwrap(),
            Latency::Uniform(Duration::from_millis(10), Duration::from_millis(50))
        );
        assert_eq!(
            "lognormal:20ms,0.5".parse::<Latency>().unwrap(),
            Latency::LogNormal { median: Duration::from_millis(20), sigma: 0.5 }
        );
        for bad in ["uniform:50ms..10ms", "lognormal:20ms", "gamma:1s", "20", "lognormal:20ms,9"] {
            let err = bad.parse::<Latency>().unwrap_err();
            assert!(err.contains("use 20ms"), "{bad}: {err}");
        }
    }

    #[test]
    fn stall_specs_parse() {
        let s: Stall = "1s/60s@2s".parse().unwrap();
        assert_eq!(
            (s.length, s.period, s.offset),
            (Duration::from_secs(1), Duration::from_secs(60), Duration::from_secs(2))
        );
        assert!("2s/1s".parse::<Stall>().is_err());
        assert!("1s".parse::<Stall>().is_err());
    }

    #[test]
    fn stall_delays_requests_to_the_end_of_the_window() {
        let f = Faults::new(Latency::None, 0.0, 0.0, Some("1s/10s@2s".parse().unwrap()), Duration::ZERO, None, 7);
        assert_eq!(f.verdict_at(Duration::from_millis(1999)), Verdict::Answer(Duration::ZERO));
        assert_eq!(f.verdict_at(Duration::from_millis(2250)), Verdict::Answer(Duration::from_millis(750)));
        assert_eq!(f.verdict_at(Duration::from_millis(3000)), Verdict::Answer(Duration::ZERO));
        assert_eq!(f.verdict_at(Duration::from_millis(12500)), Verdict::Answer(Duration::from_millis(500)));
    }

    #[test]
    fn ratios_and_distributions_hold_over_many_draws() {
        let f = Faults::new("uniform:10ms..30ms".parse().unwrap(), 0.1, 0.05, None, Duration::ZERO, None, 42);
        let (mut errors, mut drops, mut total_ms) = (0, 0, 0.0);
        let n = 100_000;
        for _ in 0..n {
            match f.verdict_at(Duration::ZERO) {
                Verdict::Drop => drops += 1,
                Verdict::Error(d) => {
                    errors += 1;
                    total_ms += d.as_secs_f64() * 1e3
                }
                Verdict::Answer(d) => {
                    assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(30));
                    total_ms += d.as_secs_f64() * 1e3
                }
            }
        }
        let answered = (n - drops) as f64;
        assert!((drops as f64 / n as f64 - 0.05).abs() < 0.005, "drops {drops}");
        assert!((errors as f64 / answered - 0.1).abs() < 0.005, "errors {errors}");
        assert!((total_ms / answered - 20.0).abs() < 0.2, "mean {}", total_ms / answered);

        let ln = Faults::new("lognormal:20ms,0.5".parse().unwrap(), 0.0, 0.0, None, Duration::ZERO, None, 42);
        let mut samples: Vec<f64> = (0..50_001)
            .map(|_| match ln.verdict_at(Duration::ZERO) {
                Verdict::Answer(d) => d.as_secs_f64() * 1e3,
                other => panic!("{other:?}"),
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        assert!((median - 20.0).abs() < 0.5, "median {median}");
    }

    #[test]
    fn same_seed_same_choices() {
        let a = Faults::new("lognormal:20ms,1".parse().unwrap(), 0.3, 0.0, None, Duration::ZERO, None, 9);
        let b = Faults::new("lognormal:20ms,1".parse().unwrap(), 0.3, 0.0, None, Duration::ZERO, None, 9);
        for _ in 0..100 {
            assert_eq!(a.verdict_at(Duration::ZERO), b.verdict_at(Duration::ZERO));
        }
    }
}
