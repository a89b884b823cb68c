//! Network impairment (the kernel's netem queueing discipline) on every interface of the
//! network namespace this process runs in, through rtnetlink: what `swarmctl netem` does
//! inside a helper container that shares a replica's network namespace, so that latency,
//! jitter and loss reach that one replica's traffic, and what proves them gone afterwards.
//!
//! The messages are built by pure functions (pinned by tests); only `Netlink` touches a socket.

use serde::{Deserialize, Serialize};

const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_GETQDISC: u16 = 38;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const TC_H_ROOT: u32 = 0xFFFF_FFFF;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_NETEM_LATENCY64: u16 = 10;
const TCA_NETEM_JITTER64: u16 = 11;
/// The queue netem holds (tc's default).
const LIMIT: u32 = 1000;

/// What is added to every packet a replica sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Impairment {
    /// Added latency, ms.
    pub delay_ms: u64,
    /// Its variation (uniform, ±), ms.
    pub jitter_ms: u64,
    /// Share of packets dropped, 0 to 1.
    pub loss: f64,
}

/// What the helper is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Say whether the kernel has netem (set and removed on loopback).
    Probe,
    /// Impair every interface but loopback.
    Apply(Impairment),
    /// Remove it, and say what is left.
    Clear,
}

impl Order {
    /// As `swarmctl netem` takes it.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["netem".to_string()];
        match self {
            Order::Probe => args.push("--probe".into()),
            Order::Clear => args.push("--clear".into()),
            Order::Apply(i) => args.extend([
                "--delay".into(),
                format!("{}ms", i.delay_ms),
                "--jitter".into(),
                format!("{}ms", i.jitter_ms),
                "--loss".into(),
                format!("{}", i.loss),
            ]),
        }
        args
    }
}

impl Impairment {
    /// `100 ms ± 20 ms, 1 % loss`.
    pub fn describe(&self) -> String {
        format!("{} ms ± {} ms, {} % loss", self.delay_ms, self.jitter_ms, self.loss * 100.0)
    }
}

/// What `swarmctl netem` did, as one JSON line on its standard output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The namespace's interfaces (loopback left alone).
    pub interfaces: Vec<String>,
    /// Those with a netem qdisc afterwards.
    pub netem: Vec<String>,
    /// Whether the kernel has the netem qdisc (`CONFIG_NET_SCH_NETEM`).
    #[serde(default = "yes")]
    pub supported: bool,
}

fn yes() -> bool {
    true
}

/// Why netlink refused.
#[derive(Debug, thiserror::Error)]
pub enum NetemError {
    /// The socket itself.
    #[error("netlink: {0}")]
    Socket(#[from] nix::Error),
    /// The kernel said no.
    #[error("{what} on {interface}: {errno}")]
    Refused {
        /// Add, delete, list.
        what: &'static str,
        /// Which interface.
        interface: String,
        /// The kernel's error.
        errno: nix::Error,
    },
    /// The interfaces could not be listed.
    #[error("cannot list the interfaces: {0}")]
    Interfaces(#[from] std::io::Error),
    /// The kernel has no netem.
    #[error("this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is not set): latency and loss cannot be added")]
    Unsupported,
}

fn header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) {
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
}

fn tcmsg(buf: &mut Vec<u8>, ifindex: u32, parent: u32) {
    buf.extend_from_slice(&[0, 0, 0, 0]); // family AF_UNSPEC, padding
    buf.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // handle: the kernel picks one
    buf.extend_from_slice(&parent.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // info
}

fn attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

fn finish(mut buf: Vec<u8>) -> Vec<u8> {
    let len = (buf.len() as u32).to_ne_bytes();
    buf[..4].copy_from_slice(&len);
    buf
}

/// The request that makes netem the root qdisc of `ifindex` (replacing what was there).
pub fn add_message(ifindex: u32, imp: &Impairment, seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    header(&mut buf, RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, seq);
    tcmsg(&mut buf, ifindex, TC_H_ROOT);
    attr(&mut buf, TCA_KIND, b"netem\0");
    // struct tc_netem_qopt, latency and jitter in scheduler ticks (64 ns each since Linux
    // 2.6.31, as iproute2 writes them), then the 64-bit nanosecond attributes that say them
    // exactly to kernels that know them (4.15 and later).
    let loss = (imp.loss.clamp(0.0, 1.0) * f64::from(u32::MAX)).round() as u32;
    let ns = |ms: u64| ms.saturating_mul(1_000_000).min(i64::MAX as u64) as i64;
    let ticks = |ms: u64| (ns(ms) / 64).min(i64::from(u32::MAX)) as u32;
    let mut opts = Vec::with_capacity(48);
    for v in [ticks(imp.delay_ms), LIMIT, loss, 0, 0, ticks(imp.jitter_ms)] {
        opts.extend_from_slice(&v.to_ne_bytes());
    }
    attr(&mut opts, TCA_NETEM_LATENCY64, &ns(imp.delay_ms).to_ne_bytes());
    attr(&mut opts, TCA_NETEM_JITTER64, &ns(imp.jitter_ms).to_ne_bytes());
    attr(&mut buf, TCA_OPTIONS, &opts);
    finish(buf)
}

/// The request that removes the root qdisc of `ifindex` (the interface's default comes back).
pub fn delete_message(ifindex: u32, seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(40);
    header(&mut buf, RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, seq);
    tcmsg(&mut buf, ifindex, TC_H_ROOT);
    finish(buf)
}

/// The request that lists every qdisc.
pub fn dump_message(seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(40);
    header(&mut buf, RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP, seq);
    tcmsg(&mut buf, 0, 0);
    finish(buf)
}

/// One netlink message of an answer: its type and its payload.
fn messages(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes(data[..4].try_into().expect("4 bytes")) as usize;
        if len < 16 || len > data.len() {
            break;
        }
        let kind = u16::from_ne_bytes(data[4..6].try_into().expect("2 bytes"));
        out.push((kind, &data[16..len]));
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    out
}

/// From a qdisc dump's messages, the interfaces (by index) whose qdisc is netem.
pub fn netem_indexes(answer: &[u8]) -> Vec<u32> {
    let mut found = Vec::new();
    for (kind, payload) in messages(answer) {
        if kind != RTM_NEWQDISC || payload.len() < 20 {
            continue;
        }
        let ifindex = i32::from_ne_bytes(payload[4..8].try_into().expect("4 bytes")) as u32;
        let mut attrs = &payload[20..];
        while attrs.len() >= 4 {
            let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
            let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
            if len < 4 || len > attrs.len() {
                break;
            }
            if kind == TCA_KIND && attrs[4..len].starts_with(b"netem") {
                found.push(ifindex);
            }
            attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
        }
    }
    found
}

/// The kernel's answer to one request: 0, or the errno it refused with.
fn acknowledged(answer: &[u8]) -> Option<i32> {
    messages(answer).into_iter().find(|(k, _)| *k == NLMSG_ERROR).map(|(_, p)| match p.get(..4) {
        Some(code) => -i32::from_ne_bytes(code.try_into().expect("4 bytes")),
        None => nix::Error::EPROTO as i32,
    })
}

/// Every interface of this network namespace but loopback, from `/proc/net/dev` (procfs
/// answers for the reader's own namespace).
pub fn interfaces() -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string("/proc/net/dev")?;
    Ok(text
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_string()))
        .filter(|n| n != "lo")
        .collect())
}

/// A route netlink socket.
struct Netlink {
    fd: std::os::fd::OwnedFd,
    seq: u32,
}

impl Netlink {
    fn open() -> Result<Netlink, NetemError> {
        use nix::sys::socket::{bind, socket, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType};
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)?;
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, 0))?;
        Ok(Netlink { fd, seq: 1 })
    }

    /// Sends one request and reads until its acknowledgement (or the end of a dump).
    fn ask(&mut self, request: Vec<u8>) -> Result<Vec<u8>, nix::Error> {
        use nix::sys::socket::{recv, send, MsgFlags};
        use std::os::fd::AsRawFd;
        self.seq += 1;
        send(self.fd.as_raw_fd(), &request, MsgFlags::empty())?;
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            all.extend_from_slice(&buf[..n]);
            if messages(&buf[..n]).iter().any(|(k, _)| matches!(*k, NLMSG_ERROR | NLMSG_DONE)) || n == 0 {
                return Ok(all);
            }
        }
    }

    fn expect_ack(&mut self, request: Vec<u8>, what: &'static str, interface: &str) -> Result<(), NetemError> {
        let answer = self.ask(request)?;
        match acknowledged(&answer) {
            Some(0) | None => Ok(()),
            Some(errno) => {
                Err(NetemError::Refused { what, interface: interface.into(), errno: nix::Error::from_raw(errno) })
            }
        }
    }

    fn netem_on(&mut self, names: &[(String, u32)]) -> Result<Vec<String>, NetemError> {
        let seq = self.seq;
        let answer = self.ask(dump_message(seq))?;
        let on = netem_indexes(&answer);
        Ok(names.iter().filter(|(_, i)| on.contains(i)).map(|(n, _)| n.clone()).collect())
    }
}

fn indexed() -> Result<Vec<(String, u32)>, NetemError> {
    interfaces()?
        .into_iter()
        .map(|n| {
            let i = nix::net::if_::if_nametoindex(n.as_str()).map_err(|errno| NetemError::Refused {
                what: "find",
                interface: n.clone(),
                errno,
            })?;
            Ok((n, i))
        })
        .collect()
}

/// Whether the kernel has netem: a netem qdisc that adds nothing is set on loopback and
/// removed at once. A kernel without it says ENOENT (tc: "Specified qdisc kind is unknown").
pub fn probe() -> Result<Outcome, NetemError> {
    let lo = nix::net::if_::if_nametoindex("lo").map_err(|errno| NetemError::Refused {
        what: "find",
        interface: "lo".into(),
        errno,
    })?;
    let mut nl = Netlink::open()?;
    let seq = nl.seq;
    let supported = match nl.expect_ack(add_message(lo, &Impairment::default(), seq), "add netem", "lo") {
        Ok(()) => true,
        Err(NetemError::Refused { errno: nix::Error::ENOENT | nix::Error::EOPNOTSUPP, .. }) => false,
        Err(e) => return Err(e),
    };
    if supported {
        let seq = nl.seq;
        nl.expect_ack(delete_message(lo, seq), "remove the qdisc", "lo")?;
    }
    Ok(Outcome { interfaces: vec!["lo".into()], netem: Vec::new(), supported })
}

/// Puts `imp` on every interface but loopback.
pub fn apply(imp: &Impairment) -> Result<Outcome, NetemError> {
    let names = indexed()?;
    let mut nl = Netlink::open()?;
    for (name, index) in &names {
        let seq = nl.seq;
        match nl.expect_ack(add_message(*index, imp, seq), "add netem", name) {
            Err(NetemError::Refused { errno: nix::Error::ENOENT | nix::Error::EOPNOTSUPP, .. }) => {
                return Err(NetemError::Unsupported)
            }
            other => other?,
        }
    }
    let netem = nl.netem_on(&names)?;
    Ok(Outcome { interfaces: names.into_iter().map(|(n, _)| n).collect(), netem, supported: true })
}

/// Removes the root qdisc of every interface but loopback, and lists any netem left.
pub fn clear() -> Result<Outcome, NetemError> {
    let names = indexed()?;
    let mut nl = Netlink::open()?;
    for (name, index) in &names {
        let seq = nl.seq;
        match nl.expect_ack(delete_message(*index, seq), "remove the qdisc", name) {
            // Nothing to remove: the interface had its default qdisc already.
            Err(NetemError::Refused { errno: nix::Error::ENOENT | nix::Error::EINVAL, .. }) => {}
            other => other?,
        }
    }
    let netem = nl.netem_on(&names)?;
    Ok(Outcome { interfaces: names.into_iter().map(|(n, _)| n).collect(), netem, supported: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn the_add_request_is_a_root_netem_qdisc_with_exact_nanoseconds_and_a_loss_share() {
        let imp = Impairment { delay_ms: 100, jitter_ms: 20, loss: 0.01 };
        let m = add_message(7, &imp, 3);
        assert_eq!(u32_at(&m, 0) as usize, m.len(), "the length covers the message");
        assert_eq!(u16_at(&m, 4), RTM_NEWQDISC);
        assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
        assert_eq!(u32_at(&m, 8), 3, "sequence");
        assert_eq!(u32_at(&m, 20), 7, "ifindex");
        assert_eq!(u32_at(&m, 28), TC_H_ROOT, "parent: the root");
        // TCA_KIND "netem\0", padded to 8 bytes.
        assert_eq!((u16_at(&m, 36), u16_at(&m, 38)), (10, TCA_KIND));
        assert_eq!(&m[40..46], b"netem\0");
        // TCA_OPTIONS: the 24-byte qopt, then LATENCY64 and JITTER64 (12 bytes each).
        assert_eq!((u16_at(&m, 48), u16_at(&m, 50)), (4 + 24 + 12 + 12, TCA_OPTIONS));
        let qopt = 52;
        assert_eq!(u32_at(&m, qopt), 1_562_500, "100 ms in 64 ns ticks");
        assert_eq!(u32_at(&m, qopt + 4), LIMIT);
        assert_eq!(u32_at(&m, qopt + 20), 312_500, "20 ms in 64 ns ticks");
        let loss = u32_at(&m, qopt + 8) as f64 / f64::from(u32::MAX);
        assert!((loss - 0.01).abs() < 1e-9, "{loss}");
        assert_eq!((u16_at(&m, qopt + 24), u16_at(&m, qopt + 26)), (12, TCA_NETEM_LATENCY64));
        assert_eq!(i64::from_ne_bytes(m[qopt + 28..qopt + 36].try_into().unwrap()), 100_000_000);
        assert_eq!(u16_at(&m, qopt + 38), TCA_NETEM_JITTER64);
        assert_eq!(i64::from_ne_bytes(m[qopt + 40..qopt + 48].try_into().unwrap()), 20_000_000);
        assert_eq!(m.len(), qopt + 48);
    }

    #[test]
    fn delete_and_dump_requests_name_the_root_and_every_qdisc() {
        let d = delete_message(4, 9);
        assert_eq!((u32_at(&d, 0), u16_at(&d, 4), u16_at(&d, 6)), (36, RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!((u32_at(&d, 20), u32_at(&d, 28)), (4, TC_H_ROOT));
        let g = dump_message(1);
        assert_eq!((u16_at(&g, 4), u16_at(&g, 6)), (RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP));
    }

    #[test]
    fn a_dump_answer_names_the_interfaces_whose_qdisc_is_netem() {
        // Two answers as the kernel sends them: eth0 (index 7) with netem, eth1 (8) with noqueue.
        let netem = add_message(7, &Impairment { delay_ms: 1, jitter_ms: 0, loss: 0.0 }, 1);
        let mut other = Vec::new();
        header(&mut other, RTM_NEWQDISC, 0, 1);
        tcmsg(&mut other, 8, TC_H_ROOT);
        attr(&mut other, TCA_KIND, b"noqueue\0");
        let mut answer = netem.clone();
        answer.extend(finish(other));
        let mut done = Vec::new();
        header(&mut done, NLMSG_DONE, 0, 1);
        answer.extend(finish(done));
        assert_eq!(netem_indexes(&answer), [7]);
    }

    #[test]
    fn an_acknowledgement_carries_the_kernels_errno() {
        let mut ack = Vec::new();
        header(&mut ack, NLMSG_ERROR, 0, 1);
        ack.extend_from_slice(&(-2i32).to_ne_bytes());
        ack.extend_from_slice(&[0; 16]);
        assert_eq!(acknowledged(&finish(ack)), Some(2));
        assert_eq!(acknowledged(&[]), None);
    }

    #[test]
    fn the_helper_is_asked_in_its_own_words() {
        let imp = Impairment { delay_ms: 100, jitter_ms: 20, loss: 0.01 };
        assert_eq!(Order::Apply(imp).args(), ["netem", "--delay", "100ms", "--jitter", "20ms", "--loss", "0.01"]);
        assert_eq!(Order::Clear.args(), ["netem", "--clear"]);
        assert_eq!(Order::Probe.args(), ["netem", "--probe"]);
        assert_eq!(imp.describe(), "100 ms ± 20 ms, 1 % loss");
    }
}
