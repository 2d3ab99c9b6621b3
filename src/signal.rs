//! Signals, as the flows see them: a stream of [`Wake`] events. A leaf.
//!
//! [`Signals`] is the operating system's stream (SIGTERM from ECS StopTask or `docker
//! stop`, SIGINT, and SIGHUP for `run`); tests drive the same flows with any other
//! [`Wakes`] implementation (a channel), so stop and refresh can be tested in-process with
//! paused time.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}

/// What woke a flow from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Stop(Signal),
    /// SIGHUP: check for new credentials now.
    Refresh,
}

/// A source of wake events. `async fn` in a trait: the futures never cross threads (the
/// binary runs a current-thread runtime), so no `Send` bound is needed.
#[allow(async_fn_in_trait)]
pub trait Wakes {
    /// The next event. Must be cancel-safe: flows race it against their own work.
    async fn next(&mut self) -> Wake;

    /// The next stop signal; refresh requests before it are dropped (nothing to refresh
    /// before the first publish: the wait resolves the secret afresh anyway).
    async fn stop(&mut self) -> Signal {
        loop {
            if let Wake::Stop(sig) = self.next().await {
                return sig;
            }
        }
    }
}

/// SIGTERM, SIGINT and, for `run`, SIGHUP; installed up front so a signal during start-up
/// is not lost to the default handler.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub fn install(hangup: bool) -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: hangup.then(|| signal(SignalKind::hangup())).transpose()?,
        })
    }
}

impl Wakes for Signals {
    async fn next(&mut self) -> Wake {
        let hup = async {
            match &mut self.hup {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            () = hup => Wake::Refresh,
            _ = self.term.recv() => Wake::Stop(Signal::Terminate),
            _ = self.int.recv() => Wake::Stop(Signal::Interrupt),
        };
        match wake {
            Wake::Refresh => tracing::info!(signal = "SIGHUP", "refresh requested"),
            Wake::Stop(sig) => tracing::info!(signal = %sig, "stop signal received"),
        }
        wake
    }
}

/// Wake events from a channel: what tests (and any embedding program) use instead of OS
/// signals. A closed channel never wakes again.
impl Wakes for tokio::sync::mpsc::UnboundedReceiver<Wake> {
    async fn next(&mut self) -> Wake {
        match self.recv().await {
            Some(w) => w,
            None => std::future::pending().await,
        }
    }
}
