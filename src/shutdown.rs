//! The root of the cancellation tree: the first SIGINT (Ctrl-C) or SIGTERM cancels the token,
//! so work stops, drains and reports; the second one ends the process at once (exit 130).

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// A token cancelled by the first SIGINT or SIGTERM. Must be called inside the runtime.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    // Installed before returning, not in the task: a signal that comes right after (a test
    // that sends SIGTERM as soon as the server says it is serving) must find the handler.
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        tracing::warn!("cannot install signal handlers; Ctrl-C will end the process at once");
        return token;
    };
    tokio::spawn(async move {
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        tracing::warn!("stopping: finishing what is in flight (signal again to exit at once)");
        t.cancel();
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        eprintln!("error: interrupted twice, exiting without cleaning up");
        std::process::exit(130);
    });
    token
}
