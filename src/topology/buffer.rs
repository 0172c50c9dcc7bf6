//! The channel in front of every transform and sink: batches travel on it, but
//! its capacity is counted in events (`buffer.max_events`), so memory is
//! bounded by configuration whatever the batch sizes are.
//!
//! A sender first reserves room for a batch's events, then sends; the room is
//! given back when the receiver takes the batch. Sources use the two steps to
//! reserve on every downstream before sending to any (all or nothing).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::event::Batch;
use crate::telemetry::{ComponentMetrics, Counter};

struct Envelope {
    events: Batch,
    /// Holds the batch's share of the room until the receiver takes it.
    _room: OwnedSemaphorePermit,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("downstream buffer stayed full past the send timeout")]
    Timeout,
    #[error("downstream component has stopped")]
    Closed,
}

#[derive(Clone)]
pub struct BufferSender {
    tx: mpsc::UnboundedSender<Envelope>,
    room: Arc<Semaphore>,
    max_events: u32,
}

pub struct BufferReceiver {
    rx: mpsc::UnboundedReceiver<Envelope>,
    room: Arc<Semaphore>,
}

/// Creates a buffer holding at most `max_events` events (at least one batch).
pub fn buffer(max_events: usize) -> (BufferSender, BufferReceiver) {
    let max_events = max_events.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize)) as u32;
    let (tx, rx) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(max_events as usize));
    (
        BufferSender {
            tx,
            room: room.clone(),
            max_events,
        },
        BufferReceiver { rx, room },
    )
}

/// Room reserved in one buffer for one batch.
pub struct Reservation<'a> {
    sender: &'a BufferSender,
    permit: OwnedSemaphorePermit,
}

impl Reservation<'_> {
    pub fn send(self, events: Batch) -> Result<(), SendError> {
        self.sender
            .tx
            .send(Envelope {
                events,
                _room: self.permit,
            })
            .map_err(|_| SendError::Closed)
    }
}

impl BufferSender {
    /// Waits until the buffer has room for `events` events. A batch larger than
    /// the whole buffer takes all of it rather than waiting forever.
    pub async fn reserve(&self, events: usize) -> Result<Reservation<'_>, SendError> {
        let wanted = (events as u32).clamp(1, self.max_events);
        let permit = self
            .room
            .clone()
            .acquire_many_owned(wanted)
            .await
            .map_err(|_| SendError::Closed)?;
        Ok(Reservation {
            sender: self,
            permit,
        })
    }

    pub async fn send(&self, events: Batch) -> Result<(), SendError> {
        let reservation = self.reserve(events.len()).await?;
        reservation.send(events)
    }

    /// Events currently waiting in the buffer.
    pub fn buffered_events(&self) -> usize {
        (self.max_events as usize).saturating_sub(self.room.available_permits())
    }

    pub fn max_events(&self) -> usize {
        self.max_events as usize
    }
}

impl BufferReceiver {
    /// The next batch; `None` once every sender is gone and the buffer is empty.
    pub async fn recv(&mut self) -> Option<Batch> {
        self.rx.recv().await.map(|envelope| envelope.events)
    }

    /// A batch that is already waiting, without waiting for one.
    pub fn try_recv(&mut self) -> Option<Batch> {
        self.rx.try_recv().ok().map(|envelope| envelope.events)
    }
}

impl Drop for BufferReceiver {
    fn drop(&mut self) {
        // Senders waiting for room learn at once that nobody will read.
        self.room.close();
    }
}

/// One output port of a component: every downstream buffer subscribed to it.
/// Each downstream gets its own copy of the batch.
#[derive(Clone)]
pub struct Fanout {
    senders: Vec<BufferSender>,
    sent_events: Counter,
    /// Counts what a port nobody subscribes to drops (the config warned).
    unconsumed: Counter,
}

impl Fanout {
    pub fn new(senders: Vec<BufferSender>, sent_events: Counter, unconsumed: Counter) -> Self {
        Self {
            senders,
            sent_events,
            unconsumed,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Sends to every downstream, waiting for room: the slowest downstream
    /// sets the pace (backpressure).
    pub async fn send(&self, batch: Batch) -> Result<(), SendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let count = batch.len() as u64;
        let Some((last, rest)) = self.senders.split_last() else {
            self.unconsumed.add(count);
            return Ok(());
        };
        for sender in rest {
            sender.send(batch.clone()).await?;
        }
        last.send(batch).await?;
        self.sent_events.add(count);
        Ok(())
    }

    /// Reserves room on every downstream within `timeout`, then sends: either
    /// every downstream gets the batch or none does. Used by sources, which must
    /// answer the client quickly instead of waiting.
    pub async fn send_within(&self, batch: Batch, timeout: Duration) -> Result<(), SendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let count = batch.len();
        if self.senders.is_empty() {
            self.unconsumed.add(count as u64);
            return Ok(());
        }
        let reserve_all = async {
            let mut reservations = Vec::with_capacity(self.senders.len());
            for sender in &self.senders {
                reservations.push(sender.reserve(count).await?);
            }
            Ok::<_, SendError>(reservations)
        };
        let mut reservations = match tokio::time::timeout(timeout, reserve_all).await {
            Ok(result) => result?,
            Err(_) => return Err(SendError::Timeout),
        };
        let last = reservations.pop();
        for reservation in reservations {
            reservation.send(batch.clone())?;
        }
        if let Some(last) = last {
            last.send(batch)?;
        }
        self.sent_events.add(count as u64);
        Ok(())
    }
}

/// All output ports of a component; index 0 is the default output.
#[derive(Clone)]
pub struct Outputs {
    ports: Vec<(String, Fanout)>,
}

/// Name of the unnamed output in metrics and in `inputs` (`id` alone).
pub const DEFAULT_OUTPUT: &str = "_default";

impl Outputs {
    pub fn new(ports: Vec<(String, Fanout)>) -> Self {
        Self { ports }
    }

    pub fn port(&self, name: &str) -> Option<&Fanout> {
        self.ports.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }

    pub fn default_port(&self) -> Option<&Fanout> {
        self.port(DEFAULT_OUTPUT)
    }

    pub fn ports(&self) -> &[(String, Fanout)] {
        &self.ports
    }
}

/// Registers the fill of a component's input buffer as a gauge. It holds only
/// the room counter, not a sender: a sender would keep the buffer open and
/// the component would never see its input end at shutdown.
pub fn register_buffer_gauge(metrics: &ComponentMetrics, sender: &BufferSender) {
    let room = sender.room.clone();
    let max_events = sender.max_events();
    let max = max_events as f64;
    let labels = [
        ("component_id", metrics.id.as_str()),
        ("component_kind", metrics.kind),
    ];
    metrics.registry().gauge_fn(
        "buffer_events",
        "Events waiting in a component's input buffer.",
        &labels,
        move || max_events.saturating_sub(room.available_permits()) as f64,
    );
    metrics.registry().gauge_fn(
        "buffer_max_events",
        "Capacity of a component's input buffer, in events.",
        &labels,
        move || max,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn batch(n: usize) -> Batch {
        (0..n).map(|_| Event::new()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_buffer_admits_exactly_max_events() {
        let (tx, mut rx) = buffer(10);
        let fanout = Fanout::new(vec![tx.clone()], Counter::default(), Counter::default());
        let mut admitted = 0;
        for _ in 0..10 {
            match fanout
                .send_within(batch(3), Duration::from_millis(100))
                .await
            {
                Ok(()) => admitted += 3,
                Err(e) => assert_eq!(e, SendError::Timeout),
            }
        }
        // 3 + 3 + 3 fit in 10; the fourth batch of 3 does not.
        assert_eq!(admitted, 9);
        assert_eq!(tx.buffered_events(), 9);
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(3));
        assert_eq!(tx.buffered_events(), 6);
        // Room came back: one more batch fits.
        assert!(fanout
            .send_within(batch(3), Duration::from_millis(100))
            .await
            .is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn send_within_is_all_or_nothing_across_downstreams() {
        let (fast, mut fast_rx) = buffer(100);
        let (slow, _slow_rx) = buffer(4);
        let fanout = Fanout::new(vec![fast, slow], Counter::default(), Counter::default());
        assert!(fanout
            .send_within(batch(4), Duration::from_millis(50))
            .await
            .is_ok());
        assert_eq!(
            fanout
                .send_within(batch(4), Duration::from_millis(50))
                .await,
            Err(SendError::Timeout)
        );
        assert_eq!(fast_rx.recv().await.map(|b| b.len()), Some(4));
        assert!(
            fast_rx.try_recv().is_none(),
            "the refused batch reached nobody"
        );
    }

    #[tokio::test]
    async fn closed_receiver_is_reported() {
        let (tx, rx) = buffer(10);
        drop(rx);
        assert_eq!(tx.send(batch(1)).await, Err(SendError::Closed));
    }

    #[tokio::test]
    async fn oversized_batch_takes_the_whole_buffer() {
        let (tx, mut rx) = buffer(5);
        tx.send(batch(50)).await.expect("fits alone");
        assert_eq!(tx.buffered_events(), 5);
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(50));
    }
}
