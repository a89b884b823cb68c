//! What this machine's kernel dropped while a run ran: packets refused because the
//! connection-tracking table was full, or because a CPU's input backlog was. Either turns into
//! failed connections and retransmissions that look like the stack's doing, so a run says so.

/// Packet drop counters since boot, as the kernel keeps them (`None`: not readable here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// Packets dropped because the connection-tracking table was full (this network namespace).
    pub conntrack: Option<u64>,
    /// Packets dropped because a CPU's input backlog was full (`net.core.netdev_max_backlog`).
    pub backlog: Option<u64>,
}

impl Drops {
    /// Reads the counters now.
    pub fn read() -> Drops {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Drops {
            conntrack: read("/proc/net/stat/nf_conntrack").and_then(|t| conntrack_drops(&t)),
            backlog: read("/proc/net/softnet_stat").and_then(|t| backlog_drops(&t)),
        }
    }
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
pub fn notes(before: Drops, after: Drops) -> Vec<String> {
    let setting = |path: &str| std::fs::read_to_string(path).ok().map(|v| v.trim().to_string());
    notes_with(
        before,
        after,
        setting("/proc/sys/net/netfilter/nf_conntrack_max"),
        setting("/proc/sys/net/core/netdev_max_backlog"),
    )
}

fn notes_with(before: Drops, after: Drops, conntrack_max: Option<String>, backlog_max: Option<String>) -> Vec<String> {
    let grew = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b > a => Some(b - a),
        _ => None,
    };
    let mut notes = Vec::new();
    if let Some(n) = grew(before.conntrack, after.conntrack) {
        notes.push(format!(
            "this machine's kernel dropped {n} packets during the run because its connection-tracking table was full (net.netfilter.nf_conntrack_max = {}): connections failed or waited here, whatever the stack did; raise it (sysctl -w net.netfilter.nf_conntrack_max=…)",
            conntrack_max.as_deref().unwrap_or("unknown")
        ));
    }
    if let Some(n) = grew(before.backlog, after.backlog) {
        notes.push(format!(
            "this machine's kernel dropped {n} incoming packets during the run because a CPU's input backlog was full (net.core.netdev_max_backlog = {}): each is sent again 200 ms or more later (a connection's first packet: a second later); raise it (sysctl -w net.core.netdev_max_backlog=…)",
            backlog_max.as_deref().unwrap_or("unknown")
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
        assert!(Drops::read().backlog.is_some(), "/proc/net/softnet_stat: {:?}", Drops::read());
    }

    #[test]
    fn a_note_says_how_many_packets_each_full_table_dropped_and_what_to_raise() {
        let before = Drops { conntrack: Some(100), backlog: Some(7) };
        let after = Drops { conntrack: Some(100 + 91_363), backlog: Some(7 + 4_984) };
        let notes = notes_with(before, after, Some("262144".into()), Some("1000".into()));
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

        assert!(notes_with(before, before, None, None).is_empty(), "nothing dropped: nothing said");
        let unread = Drops { conntrack: None, backlog: None };
        assert!(notes_with(unread, after, None, None).is_empty(), "no count before: no claim");
        let one = notes_with(
            Drops { conntrack: Some(1), backlog: None },
            Drops { conntrack: Some(3), backlog: None },
            None,
            None,
        );
        assert_eq!(one.len(), 1);
        assert!(one[0].contains("dropped 2 packets") && one[0].contains("= unknown"), "{one:?}");
    }
}
