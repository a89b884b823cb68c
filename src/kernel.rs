//! What this machine's kernel dropped while a run ran: packets refused because the
//! connection-tracking table was full, or because a CPU's input backlog was. Either turns into
//! failed connections and retransmissions that look like the stack's doing, so a run says so.

use std::collections::BTreeMap;

/// Packet drop counters, as the kernel keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drops {
    /// Packets dropped because the connection-tracking table was full, by network namespace
    /// (its inode): the table is the machine's, but each namespace counts its own drops, and a
    /// load balancer's connections to the replicas are tracked in its container's.
    pub conntrack: BTreeMap<u64, u64>,
    /// Packets dropped because a CPU's input backlog was full (`net.core.netdev_max_backlog`),
    /// since boot; `None`: not readable here.
    pub backlog: Option<u64>,
}

impl Drops {
    /// Reads the counters now: the backlog's, and conntrack's in every network namespace a
    /// process here can be seen in (all of them as root).
    pub fn read() -> Drops {
        let mut conntrack = BTreeMap::new();
        for pid in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let dir = pid.path();
            let Some(ns) = std::fs::read_link(dir.join("ns/net")).ok().and_then(|l| netns_inode(&l.to_string_lossy()))
            else {
                continue;
            };
            if conntrack.contains_key(&ns) {
                continue;
            }
            let text = std::fs::read_to_string(dir.join("net/stat/nf_conntrack")).ok();
            if let Some(n) = text.and_then(|t| conntrack_drops(&t)) {
                conntrack.insert(ns, n);
            }
        }
        Drops {
            conntrack,
            backlog: std::fs::read_to_string("/proc/net/softnet_stat").ok().and_then(|t| backlog_drops(&t)),
        }
    }
}

/// The connection-tracking table's size (`net.netfilter.nf_conntrack_max`); `None` when
/// netfilter has not loaded it here.
pub fn conntrack_max() -> Option<u64> {
    sysctl("/proc/sys/net/netfilter/nf_conntrack_max")
}

fn sysctl(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `net:[4026531840]` → 4026531840.
fn netns_inode(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Conntrack drops between two readings: a namespace's growth, or all of a namespace that
/// came after the first (its counters start at 0). One gone by the second is not known.
fn conntrack_grew(before: &BTreeMap<u64, u64>, after: &BTreeMap<u64, u64>) -> u64 {
    after.iter().map(|(ns, n)| n.saturating_sub(before.get(ns).copied().unwrap_or(0))).sum()
}

/// The `drop` column of `/proc/net/stat/nf_conntrack` summed over the CPUs (hex, one row per
/// CPU under a header naming the columns).
fn conntrack_drops(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    let column = lines.next()?.split_whitespace().position(|c| c == "drop")?;
    lines.map(|l| u64::from_str_radix(l.split_whitespace().nth(column)?, 16).ok()).sum()
}

/// The second column of `/proc/net/softnet_stat` summed over the CPUs (hex, no header).
fn backlog_drops(text: &str) -> Option<u64> {
    text.lines().map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok()).sum()
}

/// A note for each kind of drop that grew between `before` and `after`, with the setting
/// that bounds it (read now) and how to raise it.
pub fn notes(before: &Drops, after: &Drops) -> Vec<String> {
    notes_with(before, after, conntrack_max(), sysctl("/proc/sys/net/core/netdev_max_backlog"))
}

fn notes_with(before: &Drops, after: &Drops, conntrack_max: Option<u64>, backlog_max: Option<u64>) -> Vec<String> {
    let shown = |v: Option<u64>| v.map_or("unknown".to_string(), |v| v.to_string());
    let mut notes = Vec::new();
    let n = conntrack_grew(&before.conntrack, &after.conntrack);
    if n > 0 {
        notes.push(format!(
            "this machine's kernel dropped {n} packets during the run because its connection-tracking table was full (net.netfilter.nf_conntrack_max = {}): connections failed or waited here, whatever the stack did; raise it (sysctl -w net.netfilter.nf_conntrack_max=…)",
            shown(conntrack_max)
        ));
    }
    let n = match (before.backlog, after.backlog) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };
    if n > 0 {
        notes.push(format!(
            "this machine's kernel dropped {n} incoming packets during the run because a CPU's input backlog was full (net.core.netdev_max_backlog = {}): each is sent again 200 ms or more later (a connection's first packet: a second later); raise it (sysctl -w net.core.netdev_max_backlog=…)",
            shown(backlog_max)
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNTRACK: &str = "\
entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
0001b12f  00000000 001b9da8 00000000 0000029e 00000000 00000000 00000000 00000000 00000000 000164e3 0003c69d 00000000  00000000 00000000 00000000 00000000
0001b12f  00000000 001a5b9c 00000000 000001a4 00000000 00000000 00000000 00000000 00000000 00005ea7 00025579 00000000  00000000 00000000 00000000 00000000
";

    const SOFTNET: &str = "\
07f5efba 0009de23 0000003a 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
07e0912a 000851e3 00000036 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000
";

    #[test]
    fn the_counters_are_summed_over_the_cpus_from_the_kernels_tables() {
        assert_eq!(conntrack_drops(CONNTRACK), Some(0x164e3 + 0x5ea7), "the `drop` column, not `early_drop`");
        assert_eq!(backlog_drops(SOFTNET), Some(0x9de23 + 0x851e3));
        assert_eq!(conntrack_drops("entries found\n1 2\n"), None, "no `drop` column: unknown, not 0");
        assert_eq!(conntrack_drops(""), None);
        assert_eq!(backlog_drops("07f5efba zz\n"), None, "a row it cannot read: unknown");
    }

    #[test]
    fn this_machine_s_counters_are_readable() {
        // Every Linux kernel has softnet_stat; conntrack's table exists once netfilter tracks
        // a connection (the engine's NAT does), so it may be absent on a bare test machine.
        let now = Drops::read();
        assert!(now.backlog.is_some(), "/proc/net/softnet_stat: {now:?}");
        assert_eq!(netns_inode("net:[4026531840]"), Some(4026531840));
        assert_eq!(netns_inode("mnt:[4026531840]"), None);
    }

    #[test]
    fn conntrack_drops_add_up_over_namespaces_old_and_new() {
        let before = BTreeMap::from([(1, 100), (2, 5), (3, 9)]);
        // 1 grew by 20, 2 did not, 3 is gone (unknown), 4 came during the run and dropped 7.
        let after = BTreeMap::from([(1, 120), (2, 5), (4, 7)]);
        assert_eq!(conntrack_grew(&before, &after), 27);
        assert_eq!(conntrack_grew(&before, &before), 0);
        assert_eq!(conntrack_grew(&BTreeMap::from([(1, 9)]), &BTreeMap::from([(1, 2)])), 0, "a reused inode: no claim");
    }

    #[test]
    fn a_note_says_how_many_packets_each_full_table_dropped_and_what_to_raise() {
        let before = Drops { conntrack: BTreeMap::from([(1, 100)]), backlog: Some(7) };
        let after = Drops { conntrack: BTreeMap::from([(1, 100), (2, 91_363)]), backlog: Some(7 + 4_984) };
        let notes = notes_with(&before, &after, Some(262_144), Some(1_000));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("dropped 91363 packets") && notes[0].contains("nf_conntrack_max = 262144"),
            "{}",
            notes[0]
        );
        assert!(notes[0].contains("sysctl -w net.netfilter.nf_conntrack_max="), "{}", notes[0]);
        assert!(
            notes[1].contains("dropped 4984 incoming packets") && notes[1].contains("netdev_max_backlog = 1000"),
            "{}",
            notes[1]
        );

        assert!(notes_with(&before, &before, None, None).is_empty(), "nothing dropped: nothing said");
        let no_backlog = |d: &Drops| Drops { backlog: None, ..d.clone() };
        let only = notes_with(&no_backlog(&before), &after, None, None);
        assert_eq!(only.len(), 1, "no backlog count before: no claim about it: {only:?}");
        assert!(only[0].contains("dropped 91363 packets") && only[0].contains("= unknown"), "{only:?}");
    }
}
