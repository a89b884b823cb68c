//! How far a node's clock is from this machine's, measured the way NTP does: the node's time
//! read inside a round trip lies between the request's departure and the answer's arrival,
//! so the offset is known to within half the round trip (the shortest of a few is kept).

use serde::{Deserialize, Serialize};

/// One round trip: when it left and came back (this machine's clock) and what the node's
/// clock read in between, with that reading's resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Departure, Unix milliseconds here.
    pub sent_ms: f64,
    /// The node's clock, Unix milliseconds there.
    pub remote_ms: f64,
    /// Arrival, Unix milliseconds here.
    pub back_ms: f64,
    /// How finely the node's reading was given (1 ms for the engine's RFC 3339 time).
    pub resolution_ms: f64,
}

/// A node's clock against this machine's: `offset_ms` ahead (negative: behind), the true
/// offset within `within_ms` of it either way.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Offset {
    /// The node's clock minus this machine's, milliseconds.
    pub offset_ms: f64,
    /// How far the true offset may be from `offset_ms`, milliseconds.
    pub within_ms: f64,
}

/// The estimate from the sample with the shortest round trip (the least room for delay on one
/// way only); none from no samples.
pub fn estimate(samples: &[Sample]) -> Option<Offset> {
    let best = samples
        .iter()
        .filter(|s| s.back_ms >= s.sent_ms)
        .min_by(|a, b| (a.back_ms - a.sent_ms).total_cmp(&(b.back_ms - b.sent_ms)))?;
    Some(Offset {
        offset_ms: best.remote_ms - (best.sent_ms + best.back_ms) / 2.0,
        within_ms: (best.back_ms - best.sent_ms) / 2.0 + best.resolution_ms,
    })
}

/// Now on this machine's clock, Unix milliseconds with their fraction.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sent_ms: f64, remote_ms: f64, back_ms: f64) -> Sample {
        Sample { sent_ms, remote_ms, back_ms, resolution_ms: 0.0 }
    }

    #[test]
    fn the_shortest_round_trip_bounds_the_offset() {
        // A node 250 ms ahead; the answer of the first trip waited 40 ms on the way back.
        let samples = [sample(1000.0, 1255.0, 1050.0), sample(2000.0, 2251.0, 2002.0), sample(3000.0, 3252.0, 3006.0)];
        let o = estimate(&samples).unwrap();
        assert_eq!(o, Offset { offset_ms: 250.0, within_ms: 1.0 });
        assert!((o.offset_ms - 250.0).abs() <= o.within_ms, "the true offset lies within the bound");
    }

    #[test]
    fn a_coarse_reading_widens_the_bound_and_nothing_is_no_estimate() {
        let s = Sample { sent_ms: 0.0, remote_ms: -3.0, back_ms: 4.0, resolution_ms: 1.0 };
        assert_eq!(estimate(&[s]), Some(Offset { offset_ms: -5.0, within_ms: 3.0 }));
        assert_eq!(estimate(&[]), None);
        assert_eq!(estimate(&[sample(5.0, 0.0, 4.0)]), None, "a clock that went back here is no sample");
    }
}
