//! The pipeline's shutdown signal, after mini-redis's `Shutdown`: the topology
//! owns the one [`ShutdownTrigger`]; every task that must act when shutdown
//! begins (listeners stop accepting, sinks bound their retries) holds a
//! [`Shutdown`] from it, handed over when the component is built.

use tokio::sync::watch;

/// The topology's side: begins shutdown once, for every [`Shutdown`] at once.
#[derive(Debug)]
pub struct ShutdownTrigger {
    /// `true` once shutdown has begun. A watch rather than mini-redis's
    /// broadcast, so a task subscribed late (or that checks only now and
    /// then) still sees that it has begun.
    begun: watch::Sender<bool>,
}

impl Default for ShutdownTrigger {
    fn default() -> Self {
        Self::new()
    }
}

impl ShutdownTrigger {
    pub fn new() -> Self {
        Self {
            begun: watch::Sender::new(false),
        }
    }

    /// A listening end for one task.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            begun: self.begun.subscribe(),
        }
    }

    /// Tells every [`Shutdown`] that shutdown has begun; later calls do nothing.
    pub fn begin(&self) {
        self.begun.send_replace(true);
    }
}

/// A task's view of the shutdown signal. Cheap to clone: each connection of a
/// listener holds one.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Turns `true` when the topology begins shutting down.
    begun: watch::Receiver<bool>,
}

impl Shutdown {
    /// Whether shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        *self.begun.borrow()
    }

    /// Resolves once shutdown has begun (at once if it already has). If the
    /// trigger is dropped without beginning, nothing will ever begin shutdown
    /// and this never resolves: a sink built and dropped (`validate`) or one
    /// driven by a test that does not stop it behaves as if running.
    pub async fn recv(&mut self) {
        if self.begun.wait_for(|begun| *begun).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_subscriber_sees_shutdown_begin_even_one_subscribed_after() {
        let trigger = ShutdownTrigger::new();
        let mut early = trigger.subscribe();
        let copy = early.clone();
        assert!(!early.is_shutdown());
        let waiting = tokio::spawn(async move { early.recv().await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "no shutdown yet");

        trigger.begin();
        waiting.await.unwrap();
        assert!(copy.is_shutdown());
        let mut late = trigger.subscribe();
        assert!(late.is_shutdown());
        late.recv().await;
        trigger.begin();
        assert!(late.is_shutdown(), "beginning twice changes nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_dropped_without_beginning_never_signals() {
        let trigger = ShutdownTrigger::new();
        let mut shutdown = trigger.subscribe();
        drop(trigger);
        let waited = tokio::time::timeout(Duration::from_secs(3600), shutdown.recv()).await;
        assert!(waited.is_err(), "recv resolved without a shutdown");
        assert!(!shutdown.is_shutdown());
    }

    #[tokio::test]
    async fn a_trigger_dropped_after_beginning_still_signals() {
        let trigger = ShutdownTrigger::new();
        let mut shutdown = trigger.subscribe();
        trigger.begin();
        drop(trigger);
        shutdown.recv().await;
        assert!(shutdown.is_shutdown());
    }
}
