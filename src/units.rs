//! Human units used in stack files and compose files: durations, CPU counts and byte sizes.
//!
//! Each type parses the spellings a platform engineer already writes in compose files and renders
//! back one canonical spelling that both `docker stack deploy` and our own compose parser accept.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration written Go-style, as compose and swarm do: `500ms`, `30s`, `1m30s`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

/// A fractional CPU count (`4`, `0.5`), as in compose `deploy.resources.*.cpus`.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Cpus(pub f64);

/// A byte size: a plain integer, or a number with a binary unit (`512M`, `2GiB`, `64k`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// Why a unit string was rejected; the message says what would be valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(String);

const DURATION_HELP: &str = "a duration is a number with a unit (ns, us, ms, s, m, h), e.g. 500ms, 30s or 1m30s";
const BYTES_HELP: &str =
    "a size is a number of bytes, or a number with a unit (k, M, G, T; KiB, MiB, GiB, TiB), e.g. 512M or 2GiB";
const CPUS_HELP: &str = "a CPU count is a positive number, e.g. 4 or 0.5";

impl Duration {
    /// The duration in whole nanoseconds, as the Engine API wants it (saturating).
    pub fn as_nanos_i64(self) -> i64 {
        i64::try_from(self.0.as_nanos()).unwrap_or(i64::MAX)
    }

    /// A duration of `secs` seconds.
    pub fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// A duration of `ms` milliseconds.
    pub fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let bad = || UnitError(format!("invalid duration `{s}`: {DURATION_HELP}"));
        if text.is_empty() {
            return Err(bad());
        }
        if text == "0" {
            return Ok(Duration::default());
        }
        let mut total: f64 = 0.0;
        let mut rest = text;
        while !rest.is_empty() {
            let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
            if num_len == 0 {
                return Err(bad());
            }
            let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
            rest = &rest[num_len..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
            let nanos_per_unit = match &rest[..unit_len] {
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return Err(bad()),
            };
            total += value * nanos_per_unit;
            rest = &rest[unit_len..];
        }
        if !total.is_finite() || total > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(Duration(std::time::Duration::from_nanos(total.round() as u64)))
    }
}

impl fmt::Display for Duration {
    /// Canonical spelling: `0s`, `250ms`, `1m30s`, `2h`; sub-millisecond values in `us`/`ns`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos % 1_000_000_000 != 0 {
            return if nanos % 1_000_000 == 0 {
                write!(f, "{}ms", nanos / 1_000_000)
            } else if nanos % 1_000 == 0 {
                write!(f, "{}us", nanos / 1_000)
            } else {
                write!(f, "{nanos}ns")
            };
        }
        let secs = nanos / 1_000_000_000;
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl Cpus {
    /// The count in billionths of a CPU, as the Engine API wants it.
    pub fn as_nano_cpus(self) -> i64 {
        (self.0 * 1e9).round() as i64
    }
}

impl FromStr for Cpus {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(Cpus(v)),
            _ => Err(UnitError(format!("invalid CPU count `{s}`: {CPUS_HELP}"))),
        }
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // f64's Display prints whole values without a fraction (`4`), the compose spelling.
        write!(f, "{}", self.0)
    }
}

impl ByteSize {
    /// The size as the Engine API's signed byte count (saturating).
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let bad = || UnitError(format!("invalid size `{s}`: {BYTES_HELP}"));
        let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
        if split == 0 {
            return Err(bad());
        }
        let value: f64 = text[..split].parse().map_err(|_| bad())?;
        // Like docker's own RAMInBytes, every unit is binary: `M` and `MB` both mean 2^20.
        let multiplier: u64 = match text[split..].trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => return Err(bad()),
        };
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes > i64::MAX as f64 {
            return Err(bad());
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    /// Canonical spelling: the largest binary unit that divides the size exactly (`2G`, `512M`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
            let size = 1u64 << shift;
            if b >= size && b % size == 0 {
                return write!(f, "{}{unit}", b / size);
            }
        }
        write!(f, "{b}")
    }
}

/// Serde glue: every unit type reads a string (or, where it makes sense, a bare number) and
/// writes its canonical string.
macro_rules! unit_serde {
    ($ty:ty, $expecting:expr, numbers: $numbers:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        if !$numbers && v != 0 {
                            return Err(E::custom(concat!("a bare number is ambiguous here: ", $expecting)));
                        }
                        self.visit_str(&v.to_string())
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        if v < 0 {
                            return Err(E::custom(concat!("must not be negative: ", $expecting)));
                        }
                        self.visit_u64(v as u64)
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$ty, E> {
                        if !$numbers && v != 0.0 {
                            return Err(E::custom(concat!("a bare number is ambiguous here: ", $expecting)));
                        }
                        self.visit_str(&v.to_string())
                    }
                }
                d.deserialize_any(V)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

// A bare `0` is the one number that is unambiguous as a duration.
unit_serde!(Duration, "a duration is a number with a unit (ns, us, ms, s, m, h), e.g. 500ms, 30s or 1m30s", numbers: false);
unit_serde!(Cpus, "a CPU count is a positive number, e.g. 4 or 0.5", numbers: true);
unit_serde!(ByteSize, "a size is a number of bytes, or a number with a unit (k, M, G, T; KiB, MiB, GiB, TiB), e.g. 512M or 2GiB", numbers: true);

/// Serde for a `std::time::Duration` field, spelled as [`Duration`] is (`1500ms`, `30s`).
pub mod std_duration {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the canonical spelling.
    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&super::Duration(*d))
    }

    /// Reads any spelling [`super::Duration`] reads.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        Ok(super::Duration::deserialize(d)?.0)
    }
}

/// Serde for a type that reads and writes one text (a mix, a threshold): it is written as its
/// `Display` and read with its `FromStr`, whose message is the error.
macro_rules! text_serde {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use text_serde;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_go_style() {
        let cases = [
            ("0", 0),
            ("0s", 0),
            ("500ms", 500_000_000),
            ("30s", 30_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1.5s", 1_500_000_000),
            ("2h", 7_200_000_000_000),
            ("250us", 250_000),
            ("10ns", 10),
        ];
        for (text, nanos) in cases {
            let d: Duration = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(d.as_nanos_i64(), nanos, "{text}");
        }
    }

    #[test]
    fn durations_reject_what_swarm_would_misread() {
        for text in ["", "30", "s", "5 minutes", "1d", "-1s", "1.2.3s", "ms5"] {
            let err = text.parse::<Duration>().unwrap_err();
            assert!(err.to_string().contains("e.g. 500ms"), "{text}: {err}");
        }
    }

    #[test]
    fn durations_round_trip_canonically() {
        for (text, canonical) in
            [("90s", "1m30s"), ("1500ms", "1500ms"), ("0", "0s"), ("3600s", "1h"), ("250us", "250us")]
        {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.to_string(), canonical);
            assert_eq!(canonical.parse::<Duration>().unwrap(), d);
        }
    }

    #[test]
    fn cpus_become_nano_cpus() {
        for (text, nano) in [("4", 4_000_000_000), ("0.5", 500_000_000), ("0.001", 1_000_000)] {
            assert_eq!(text.parse::<Cpus>().unwrap().as_nano_cpus(), nano, "{text}");
        }
        for text in ["0", "-1", "four", "NaN", "inf"] {
            assert!(text.parse::<Cpus>().is_err(), "{text}");
        }
        assert_eq!(Cpus(4.0).to_string(), "4");
        assert_eq!(Cpus(0.5).to_string(), "0.5");
    }

    #[test]
    fn sizes_are_binary_like_dockers() {
        let cases = [
            ("1024", 1024),
            ("64k", 64 << 10),
            ("512M", 512 << 20),
            ("512m", 512 << 20),
            ("2048MB", 2048 << 20),
            ("2GiB", 2 << 30),
            ("1.5G", 3 << 29),
            ("1T", 1 << 40),
        ];
        for (text, bytes) in cases {
            assert_eq!(text.parse::<ByteSize>().unwrap().0, bytes, "{text}");
        }
        for text in ["", "M", "12 parsecs", "-5M", "1e400"] {
            assert!(text.parse::<ByteSize>().is_err(), "{text}");
        }
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(2 << 30).to_string(), "2G");
        assert_eq!(ByteSize(1536 << 20).to_string(), "1536M");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }

    #[test]
    fn yaml_numbers_are_accepted_only_where_unambiguous() {
        assert_eq!(serde_yaml::from_str::<Cpus>("4").unwrap(), Cpus(4.0));
        assert_eq!(serde_yaml::from_str::<ByteSize>("1048576").unwrap(), ByteSize(1 << 20));
        assert_eq!(serde_yaml::from_str::<Duration>("0").unwrap(), Duration::default());
        let err = serde_yaml::from_str::<Duration>("30").unwrap_err().to_string();
        assert!(err.contains("ambiguous"), "{err}");
    }
}

/// Now, in milliseconds since the Unix epoch: the one clock that timelines from different
/// sources (the load engine, the Docker Engine, Prometheus) share.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `YYYYMMDD-HHMMSS` in UTC, for results folder names.
pub fn utc_stamp(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since the epoch (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod stamp_tests {
    #[test]
    fn stamps_are_utc_civil_time() {
        assert_eq!(super::utc_stamp(0), "19700101-000000");
        assert_eq!(super::utc_stamp(1_795_759_848_123), "20261127-061048");
        assert_eq!(super::utc_stamp(951_825_600_000), "20000229-120000");
    }
}
