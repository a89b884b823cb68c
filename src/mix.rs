//! splitmix64, the crate's one cheap deterministic mixer: session ids in the reference server,
//! WebSocket mask keys and reconnection delays in the load engine. Not for secrets.

/// splitmix64's increment (2^64 / φ): successive states `x + k·GOLDEN` mix into independent
/// looking outputs.
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 output for state `x` (the state advanced by `GOLDEN`, then finalized).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A number in `[0, 1)` from `x`.
pub fn unit(x: u64) -> f64 {
    (splitmix64(x) >> 11) as f64 / (1u64 << 53) as f64
}
