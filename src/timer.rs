//! A sleep that wakes within tens of microseconds of its deadline. tokio's timer wheel ticks
//! every millisecond and wakes up to a millisecond or two late: a load generator would add
//! that to every corrected latency (it measures from when a request was due), and a server
//! injecting a fixed 20 ms would add it again. Far deadlines still sleep on tokio's timer;
//! only the last stretch is handed to one thread that parks with nanosecond timeouts.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// The stretch before a deadline handed to the precise thread (tokio's lateness, with room).
const HANDOFF: Duration = Duration::from_millis(3);

struct Entry {
    at: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Precise {
    heap: Mutex<(BinaryHeap<Reverse<Entry>>, u64)>,
    thread: Thread,
}

fn precise() -> &'static Precise {
    static P: OnceLock<Precise> = OnceLock::new();
    P.get_or_init(|| {
        let thread = std::thread::Builder::new()
            .name("swarmctl-timer".into())
            .spawn(run)
            .expect("cannot start the timer thread")
            .thread()
            .clone();
        Precise { heap: Mutex::new((BinaryHeap::new(), 0)), thread }
    })
}

fn run() {
    // Blocks until the initialization that spawned this thread has stored its handle.
    let p = precise();
    loop {
        let next = {
            let mut guard = p.heap.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            while guard.0.peek().is_some_and(|Reverse(e)| e.at <= now) {
                let Reverse(e) = guard.0.pop().expect("peeked");
                let _ = e.wake.send(());
            }
            guard.0.peek().map(|Reverse(e)| e.at)
        };
        match next {
            Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }
}

/// Sleeps until `at`, waking within tens of microseconds of it.
pub async fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at <= now {
        return;
    }
    if at - now > HANDOFF {
        tokio::time::sleep_until((at - HANDOFF).into()).await;
    }
    let p = precise();
    let (tx, rx) = oneshot::channel();
    let first = {
        let mut guard = p.heap.lock().unwrap_or_else(|e| e.into_inner());
        guard.1 += 1;
        let seq = guard.1;
        let earlier = guard.0.peek().map_or(true, |Reverse(e)| at < e.at);
        guard.0.push(Reverse(Entry { at, seq, wake: tx }));
        earlier
    };
    if first {
        p.thread.unpark();
    }
    let _ = rx.await;
}

/// Sleeps for `d`, waking within tens of microseconds of its end.
pub async fn sleep(d: Duration) {
    sleep_until(Instant::now() + d).await;
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn wakes_close_to_the_deadline_in_order() {
        let mut late = Vec::new();
        for ms in [1u64, 5, 20] {
            for _ in 0..20 {
                let at = Instant::now() + Duration::from_millis(ms);
                super::sleep_until(at).await;
                late.push(Instant::now().duration_since(at));
            }
        }
        late.sort();
        // Never early; the median within 300 µs (tokio alone: about 1 ms).
        assert!(late[late.len() / 2] < Duration::from_micros(300), "{:?}", late);
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let start = Instant::now();
        let tasks: Vec<_> = [9u64, 3, 6]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                tokio::spawn(async move {
                    super::sleep_until(start + Duration::from_millis(ms)).await;
                    order.lock().unwrap().push(ms);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [3, 6, 9]);
    }
}
