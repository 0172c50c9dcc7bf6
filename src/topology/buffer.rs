//! The channel in front of every transform and sink: batches travel on it, but
//! its capacity is counted in events (`buffer.max_events`) and in the bytes
//! they keep alive (`buffer.max_bytes`), so memory is bounded by
//! configuration whatever the batch and event sizes are.
//!
//! A sender first reserves room for a batch's events and bytes, then sends;
//! the room is given back when the receiver takes the batch. Sources use the
//! two steps to reserve on every downstream before sending to any (all or
//! nothing).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::event::Batch;
use crate::telemetry::{ComponentMetrics, Counter};

struct Envelope {
    events: Batch,
    /// Hold the batch's share of the room until the receiver takes it.
    _room: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
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
    /// Room in bytes; a permit is one byte of retained event memory.
    bytes: Arc<Semaphore>,
    max_bytes: u32,
}

pub struct BufferReceiver {
    rx: mpsc::UnboundedReceiver<Envelope>,
    room: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
}

fn permits(n: usize) -> u32 {
    n.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize)) as u32
}

/// Creates a buffer holding at most `max_events` events and `max_bytes`
/// bytes of them (but always at least one batch).
pub fn buffer(max_events: usize, max_bytes: usize) -> (BufferSender, BufferReceiver) {
    let max_events = permits(max_events);
    let max_bytes = permits(max_bytes);
    let (tx, rx) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(max_events as usize));
    let bytes = Arc::new(Semaphore::new(max_bytes as usize));
    (
        BufferSender {
            tx,
            room: room.clone(),
            max_events,
            bytes: bytes.clone(),
            max_bytes,
        },
        BufferReceiver { rx, room, bytes },
    )
}

/// Bytes a batch keeps alive: every event's own part, and each beacon's
/// context and block of event slots once per run of consecutive events
/// sharing it (the events of a beacon travel together). A block's count
/// stays with the event that counted it, for the next buffer.
pub fn batch_bytes(batch: &mut Batch) -> usize {
    let mut total = 0;
    let mut last: Option<&crate::event::Event> = None;
    for event in batch.iter_mut() {
        total += event.own_byte_size();
        if !last.is_some_and(|l| l.shares_own_block(event)) {
            total += event.count_block_bytes().unwrap_or(0);
        }
        if !last.is_some_and(|l| Arc::ptr_eq(l.context(), event.context())) {
            total += event.context().byte_size();
        }
        last = Some(event);
    }
    total
}

/// Room reserved in one buffer for one batch.
pub struct Reservation<'a> {
    sender: &'a BufferSender,
    permit: OwnedSemaphorePermit,
    bytes: OwnedSemaphorePermit,
}

impl Reservation<'_> {
    pub fn send(self, events: Batch) -> Result<(), SendError> {
        self.sender
            .tx
            .send(Envelope {
                events,
                _room: self.permit,
                _bytes: self.bytes,
            })
            .map_err(|_| SendError::Closed)
    }
}

/// `n` permits of `room`: taken at once when there are (the usual case, and
/// no queue is jumped: while a sender waits, released permits go to it and
/// none show as free), else waited for in turn. The wait's future and its
/// queue entry are built only when needed.
async fn take_room(room: &Arc<Semaphore>, n: u32) -> Result<OwnedSemaphorePermit, SendError> {
    match try_take_room(room, n)? {
        Some(permit) => Ok(permit),
        None => room
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| SendError::Closed),
    }
}

/// `n` permits of `room` if they are free now (`None` if not), jumping no queue.
fn try_take_room(room: &Arc<Semaphore>, n: u32) -> Result<Option<OwnedSemaphorePermit>, SendError> {
    match room.clone().try_acquire_many_owned(n) {
        Ok(permit) => Ok(Some(permit)),
        Err(TryAcquireError::NoPermits) => Ok(None),
        Err(TryAcquireError::Closed) => Err(SendError::Closed),
    }
}

impl BufferSender {
    /// Waits until the buffer has room for `events` events of `bytes` bytes.
    /// A batch larger than the whole buffer takes all of it rather than
    /// waiting forever.
    pub async fn reserve(&self, events: usize, bytes: usize) -> Result<Reservation<'_>, SendError> {
        let wanted = (events as u32).clamp(1, self.max_events);
        let permit = take_room(&self.room, wanted).await?;
        let wanted_bytes = permits(bytes).min(self.max_bytes);
        let bytes = take_room(&self.bytes, wanted_bytes).await?;
        Ok(Reservation {
            sender: self,
            permit,
            bytes,
        })
    }

    /// Room for `events` events of `bytes` bytes if there is some now,
    /// nobody waiting ahead (no queue is jumped: see [`take_room`]). `None`
    /// when there is not; a closed buffer is `Err`.
    pub fn try_reserve(
        &self,
        events: usize,
        bytes: usize,
    ) -> Result<Option<Reservation<'_>>, SendError> {
        let wanted = (events as u32).clamp(1, self.max_events);
        let Some(permit) = try_take_room(&self.room, wanted)? else {
            return Ok(None);
        };
        let Some(bytes) = try_take_room(&self.bytes, permits(bytes).min(self.max_bytes))? else {
            return Ok(None);
        };
        Ok(Some(Reservation {
            sender: self,
            permit,
            bytes,
        }))
    }

    pub async fn send(&self, mut events: Batch) -> Result<(), SendError> {
        let bytes = batch_bytes(&mut events);
        let reservation = self.reserve(events.len(), bytes).await?;
        reservation.send(events)
    }

    /// Whether a batch of one event and `bytes` bytes would get room now,
    /// nobody waiting ahead of it (the semaphores hand room out in order,
    /// so while a sender waits no permits show as available). A closed
    /// buffer has none: `reserve` then tells why.
    fn has_room(&self, bytes: usize) -> bool {
        !self.room.is_closed()
            && self.room.available_permits() >= 1
            && self.bytes.available_permits() >= permits(bytes).min(self.max_bytes) as usize
    }

    /// Events currently waiting in the buffer.
    pub fn buffered_events(&self) -> usize {
        (self.max_events as usize).saturating_sub(self.room.available_permits())
    }

    /// Bytes the waiting events keep alive (as counted by [`batch_bytes`]).
    pub fn buffered_bytes(&self) -> usize {
        (self.max_bytes as usize).saturating_sub(self.bytes.available_permits())
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
        self.bytes.close();
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
    pub async fn send(&self, mut batch: Batch) -> Result<(), SendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let count = batch.len() as u64;
        let Some((last, rest)) = self.senders.split_last() else {
            self.unconsumed.add(count);
            return Ok(());
        };
        // Each downstream gets its own batch; the events in it share their
        // parts with the other copies (a clone is two refcounts per event).
        let bytes = batch_bytes(&mut batch);
        for sender in rest {
            sender
                .reserve(count as usize, bytes)
                .await?
                .send(batch.clone())?;
        }
        last.reserve(count as usize, bytes).await?.send(batch)?;
        self.sent_events.add(count);
        Ok(())
    }

    /// Whether every downstream has room for one event of `bytes` bytes
    /// now, nobody waiting ahead: then `wait_for_room` would not wait.
    pub fn has_room_now(&self, bytes: usize) -> bool {
        self.senders.iter().all(|sender| sender.has_room(bytes))
    }

    /// Waits until `deadline` for every downstream to have room for one
    /// event and `bytes` bytes, without keeping it. Sources call it before
    /// they read the body: while the pipeline is full, a request waiting for
    /// its turn holds neither a copy of its body nor the events decoded from
    /// it (several times the body's size, times every connection waiting).
    /// Room given back goes to the next in line.
    pub async fn wait_for_room(
        &self,
        bytes: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), SendError> {
        for sender in &self.senders {
            if sender.has_room(bytes) {
                continue;
            }
            // Queued behind whoever waits already; the room is given back at once.
            match tokio::time::timeout_at(deadline, sender.reserve(1, bytes)).await {
                Ok(reservation) => drop(reservation?),
                Err(_) => return Err(SendError::Timeout),
            }
        }
        Ok(())
    }

    /// Reserves room on every downstream within `timeout`, then sends: either
    /// every downstream gets the batch or none does. Used by sources, which must
    /// answer the client quickly instead of waiting.
    pub async fn send_within(&self, batch: Batch, timeout: Duration) -> Result<(), SendError> {
        self.send_by(batch, tokio::time::Instant::now() + timeout)
            .await
    }

    /// [`Fanout::send_within`] with the time given as a deadline.
    pub async fn send_by(
        &self,
        mut batch: Batch,
        deadline: tokio::time::Instant,
    ) -> Result<(), SendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let count = batch.len();
        if self.senders.is_empty() {
            self.unconsumed.add(count as u64);
            return Ok(());
        }
        let bytes = batch_bytes(&mut batch);
        let reservations = self.reserve_by(count, bytes, deadline).await?;
        self.send_reserved(reservations, batch)
    }

    /// [`Fanout::send_by`] for a sender that must not hold `batch` while it
    /// waits for room: when a downstream has no room for it now, the batch
    /// is dropped and its size (events, bytes) handed back, to reserve that
    /// much room with [`Fanout::reserve_by`] and make the batch again.
    pub fn send_now_or_size(&self, mut batch: Batch) -> Result<Option<(usize, usize)>, SendError> {
        let count = batch.len();
        if count == 0 {
            return Ok(None);
        }
        if self.senders.is_empty() {
            self.unconsumed.add(count as u64);
            return Ok(None);
        }
        let bytes = batch_bytes(&mut batch);
        let mut reservations = Vec::with_capacity(self.senders.len());
        for sender in &self.senders {
            match sender.try_reserve(count, bytes)? {
                Some(reservation) => reservations.push(reservation),
                // What was taken goes back as the reservations drop.
                None => return Ok(Some((count, bytes))),
            }
        }
        self.send_reserved(reservations, batch).map(|()| None)
    }

    /// Waits until `deadline` for room for `events` events of `bytes` bytes
    /// on every downstream, and keeps it: the batch made next goes out
    /// through [`Fanout::send_reserved`] without waiting again. (Room
    /// waited for and given back goes to the next in line, so everyone
    /// queued behind would pass, then wait again holding their batches.)
    pub async fn reserve_by(
        &self,
        events: usize,
        bytes: usize,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Reservation<'_>>, SendError> {
        let reserve_all = async {
            let mut reservations = Vec::with_capacity(self.senders.len());
            for sender in &self.senders {
                reservations.push(sender.reserve(events, bytes).await?);
            }
            Ok::<_, SendError>(reservations)
        };
        match tokio::time::timeout_at(deadline, reserve_all).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout),
        }
    }

    /// Sends `batch` through room reserved on every downstream (one
    /// reservation each, in order).
    pub fn send_reserved(
        &self,
        mut reservations: Vec<Reservation<'_>>,
        batch: Batch,
    ) -> Result<(), SendError> {
        let count = batch.len() as u64;
        let last = reservations.pop();
        for reservation in reservations {
            reservation.send(batch.clone())?;
        }
        if let Some(last) = last {
            last.send(batch)?;
        }
        self.sent_events.add(count);
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
    let bytes = sender.bytes.clone();
    let max_bytes = sender.max_bytes as usize;
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
    metrics.registry().gauge_fn(
        "buffer_byte_size",
        "Bytes the events waiting in a component's input buffer keep alive.",
        &labels,
        move || max_bytes.saturating_sub(bytes.available_permits()) as f64,
    );
    metrics.registry().gauge_fn(
        "buffer_max_bytes",
        "Capacity of a component's input buffer, in bytes.",
        &labels,
        move || max_bytes as f64,
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
        let (tx, mut rx) = buffer(10, usize::MAX);
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
        let (fast, mut fast_rx) = buffer(100, usize::MAX);
        let (slow, _slow_rx) = buffer(4, usize::MAX);
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

    #[tokio::test(start_paused = true)]
    async fn a_blocked_buffer_admits_exactly_max_bytes() {
        // One beacon of 10 events sharing a big context (a 10 KB title).
        let beacon = || {
            let mut context = crate::event::Context::new();
            context.set(
                crate::event::FieldId::of(crate::schema::VIEW_TITLE),
                "t".repeat(10_000),
            );
            let context = Arc::new(context);
            (0..10)
                .map(|_| Event::with_context(context.clone()))
                .collect::<Batch>()
        };
        let size = batch_bytes(&mut beacon());
        // The context is counted once per batch, not once per event.
        assert!(size > 10_000 && size < 12_000, "{size}");
        let (tx, _rx) = buffer(10_000, 3 * size + size / 2);
        let fanout = Fanout::new(vec![tx.clone()], Counter::default(), Counter::default());
        let mut admitted = 0;
        for _ in 0..10 {
            if fanout
                .send_within(beacon(), Duration::from_millis(10))
                .await
                .is_ok()
            {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 3);
        assert_eq!(tx.buffered_bytes(), 3 * size);
        assert_eq!(tx.buffered_events(), 30);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_room_queues_behind_a_waiting_sender_and_keeps_nothing() {
        // Room for 8 empty events and 500 bytes more.
        let (tx, mut rx) = buffer(10, batch_bytes(&mut batch(8)) + 500);
        let fanout = Fanout::new(vec![tx.clone()], Counter::default(), Counter::default());
        let soon = || tokio::time::Instant::now() + Duration::from_millis(50);
        // Room: no wait, nothing taken.
        assert_eq!(fanout.wait_for_room(400, soon()).await, Ok(()));
        assert_eq!(tx.buffered_events(), 0);
        // 8 of 10 events taken: room for one more event of 400 bytes...
        fanout
            .send_within(batch(8), Duration::from_millis(10))
            .await
            .expect("fits");
        assert_eq!(fanout.wait_for_room(400, soon()).await, Ok(()));
        // ...but not for 600.
        assert_eq!(
            fanout.wait_for_room(600, soon()).await,
            Err(SendError::Timeout)
        );
        // A sender waiting for room holds what is free: whoever asks after
        // it waits too, even for less than is left.
        let waiting = {
            let fanout = fanout.clone();
            tokio::spawn(async move {
                fanout
                    .send_within(batch(5), Duration::from_millis(500))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            fanout.wait_for_room(1, soon()).await,
            Err(SendError::Timeout)
        );
        // Room comes: the sender ahead gets it first, then the waiter is let
        // through and gives its room back at once.
        let after_the_sender = {
            let fanout = fanout.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
                fanout.wait_for_room(1, deadline).await
            })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(8));
        assert_eq!(waiting.await.expect("task"), Ok(()));
        assert_eq!(after_the_sender.await.expect("task"), Ok(()));
        assert_eq!(tx.buffered_events(), 5, "the wait kept no room");
        // Nobody reads any more: a waiter learns it at once.
        drop(rx);
        assert_eq!(
            fanout.wait_for_room(1, soon()).await,
            Err(SendError::Closed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_without_room_is_handed_back_and_kept_room_is_never_waited_for_twice() {
        // Room for 12 events; 10 taken.
        let (tx, mut rx) = buffer(12, usize::MAX);
        let fanout = Fanout::new(vec![tx.clone()], Counter::default(), Counter::default());
        assert_eq!(fanout.send_now_or_size(batch(10)), Ok(None));
        // Ten more do not fit: handed back by size, nothing taken or sent.
        let bytes = batch_bytes(&mut batch(10));
        assert_eq!(fanout.send_now_or_size(batch(10)), Ok(Some((10, bytes))));
        assert_eq!(tx.buffered_events(), 10);
        // Five requests wait for room for ten each, and keep it once they
        // have it; each makes its batch only then. Room freed by the sink
        // goes to them in turn: every batch the sink takes lets exactly one
        // more in. (Room waited for and given back went down the queue, so
        // all five passed, and four then waited again holding their batch.)
        let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let waiting: Vec<_> = (0..5)
            .map(|_| {
                let fanout = fanout.clone();
                let made = made.clone();
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                    let reservations = fanout.reserve_by(10, bytes, deadline).await?;
                    made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    fanout.send_reserved(reservations, batch(10))
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 0);
        for taken in 1..=5 {
            assert_eq!(rx.recv().await.map(|b| b.len()), Some(10));
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(
                made.load(std::sync::atomic::Ordering::SeqCst),
                taken,
                "one batch out, one in"
            );
        }
        for task in waiting {
            assert_eq!(task.await.expect("task"), Ok(()));
        }
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(10));
    }

    #[tokio::test]
    async fn closed_receiver_is_reported() {
        let (tx, rx) = buffer(10, usize::MAX);
        drop(rx);
        assert_eq!(tx.send(batch(1)).await, Err(SendError::Closed));
    }

    #[tokio::test]
    async fn oversized_batch_takes_the_whole_buffer() {
        let (tx, mut rx) = buffer(5, usize::MAX);
        tx.send(batch(50)).await.expect("fits alone");
        assert_eq!(tx.buffered_events(), 5);
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(50));
    }
}
