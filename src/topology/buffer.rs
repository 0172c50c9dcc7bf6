//! The channel in front of every transform and sink: batches travel on it, but
//! its capacity is counted in events (`buffer.max_events`) and in the bytes
//! they keep alive (`buffer.max_bytes`), so memory is bounded by
//! configuration whatever the batch and event sizes are.
//!
//! A sender first reserves room for a batch's events and bytes, then sends;
//! the room is given back when the receiver takes the batch. Sources use the
//! two steps to reserve on every downstream before sending to any (all or
//! nothing).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::event::{Batch, Counted};
use crate::telemetry::{ComponentMetrics, Counter};

struct Envelope {
    events: Batch,
    /// The batch's bytes as counted by [`batch_bytes`] (its permits are at
    /// most the buffer's budget: an oversized batch takes all of it).
    byte_size: usize,
    /// Hold the batch's share of the room until the receiver takes it.
    _room: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// What is in the channel right now, for the gauges. The semaphores cannot
/// tell it: a sender waiting at the head of their queue already holds the
/// permits freed so far, for a batch that is not in the buffer yet.
#[derive(Default)]
struct Queued {
    events: AtomicUsize,
    bytes: AtomicUsize,
}

impl Queued {
    fn add(&self, events: usize, bytes: usize) {
        self.events.fetch_add(events, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn take(&self, envelope: &Envelope) {
        self.events
            .fetch_sub(envelope.events.len(), Ordering::Relaxed);
        self.bytes.fetch_sub(envelope.byte_size, Ordering::Relaxed);
    }
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
    queued: Arc<Queued>,
}

pub struct BufferReceiver {
    rx: mpsc::UnboundedReceiver<Envelope>,
    room: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
    queued: Arc<Queued>,
    /// A batch taken off the channel that did not fit into a merge: first
    /// in line, its room still held.
    held: Option<Envelope>,
    /// The component reading it, charged with what is still waiting when
    /// the receiver goes (see `Drop`).
    reader: Option<ComponentMetrics>,
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
    let queued = Arc::new(Queued::default());
    (
        BufferSender {
            tx,
            room: room.clone(),
            max_events,
            bytes: bytes.clone(),
            max_bytes,
            queued: queued.clone(),
        },
        BufferReceiver {
            rx,
            room,
            bytes,
            max_bytes: max_bytes as usize,
            queued,
            held: None,
            reader: None,
        },
    )
}

/// The input buffer of a component: [`buffer`], its fill as gauges, and
/// the component charged with any events it still holds when the component
/// stops reading (a panic, an abort at the shutdown timeout).
pub fn component_buffer(
    metrics: &ComponentMetrics,
    max_events: usize,
    max_bytes: usize,
) -> (BufferSender, BufferReceiver) {
    let (tx, mut rx) = buffer(max_events, max_bytes);
    register_buffer_gauge(metrics, &tx);
    rx.reader = Some(metrics.clone());
    (tx, rx)
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
        if !last.is_some_and(|l| Counted::ptr_eq(l.context(), event.context())) {
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
    byte_size: usize,
}

impl Reservation<'_> {
    pub fn send(self, events: Batch) -> Result<(), SendError> {
        let queued = &self.sender.queued;
        // Counted before it is sent, so the receiver never takes off more
        // than is there.
        queued.add(events.len(), self.byte_size);
        let envelope = Envelope {
            events,
            byte_size: self.byte_size,
            _room: self.permit,
            _bytes: self.bytes,
        };
        self.sender.tx.send(envelope).map_err(|failed| {
            queued.take(&failed.0);
            SendError::Closed
        })
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
        let byte_permits = take_room(&self.bytes, wanted_bytes).await?;
        Ok(Reservation {
            sender: self,
            permit,
            bytes: byte_permits,
            byte_size: bytes,
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
        let Some(byte_permits) = try_take_room(&self.bytes, permits(bytes).min(self.max_bytes))?
        else {
            return Ok(None);
        };
        Ok(Some(Reservation {
            sender: self,
            permit,
            bytes: byte_permits,
            byte_size: bytes,
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
        self.queued.events.load(Ordering::Relaxed)
    }

    /// Bytes the waiting events keep alive (as counted by [`batch_bytes`]).
    pub fn buffered_bytes(&self) -> usize {
        self.queued.bytes.load(Ordering::Relaxed)
    }

    pub fn max_events(&self) -> usize {
        self.max_events as usize
    }
}

impl BufferReceiver {
    /// The next batch; `None` once every sender is gone and the buffer is empty.
    pub async fn recv(&mut self) -> Option<Batch> {
        let envelope = match self.held.take() {
            Some(held) => held,
            None => self.rx.recv().await?,
        };
        Some(self.open(envelope))
    }

    /// A batch that is already waiting, without waiting for one.
    pub fn try_recv(&mut self) -> Option<Batch> {
        let envelope = match self.held.take() {
            Some(held) => held,
            None => self.rx.try_recv().ok()?,
        };
        Some(self.open(envelope))
    }

    /// The next batch merged with the batches already waiting behind it, up
    /// to `max_events` events and the buffer's byte budget (the first batch
    /// is taken whatever its size). A component that merges before it works
    /// then holds at most about one buffer's worth outside its buffer; a
    /// batch that would pass either limit stays first in line, its room
    /// still held.
    pub async fn recv_merged(&mut self, max_events: usize) -> Option<Batch> {
        self.recv_merged_within(max_events, self.max_bytes).await
    }

    /// [`recv_merged`](Self::recv_merged) within `max_bytes` instead of the
    /// buffer's byte budget (but at least the first batch).
    pub async fn recv_merged_within(
        &mut self,
        max_events: usize,
        max_bytes: usize,
    ) -> Option<Batch> {
        let first = match self.held.take() {
            Some(held) => held,
            None => self.rx.recv().await?,
        };
        let mut bytes = first.byte_size;
        let mut batch = self.open(first);
        while batch.len() < max_events {
            let Ok(next) = self.rx.try_recv() else { break };
            if batch.len() + next.events.len() > max_events || bytes + next.byte_size > max_bytes {
                self.held = Some(next);
                break;
            }
            bytes += next.byte_size;
            let more = self.open(next);
            batch.extend(more);
        }
        Some(batch)
    }

    /// The batch of an envelope taken off the channel; its room goes back.
    fn open(&self, envelope: Envelope) -> Batch {
        self.queued.take(&envelope);
        envelope.events
    }
}

impl Drop for BufferReceiver {
    fn drop(&mut self) {
        // Senders waiting for room learn at once that nobody will read.
        self.room.close();
        self.bytes.close();
        // A component reads its input until it is closed and empty; one
        // that goes before (a panic, an abort when the drain timed out)
        // leaves events its upstreams counted as sent. They are lost, and
        // counted as the reader's: received, then discarded.
        self.rx.close();
        let mut lost = 0;
        let waiting = self.held.take().into_iter();
        for envelope in waiting.chain(std::iter::from_fn(|| self.rx.try_recv().ok())) {
            self.queued.take(&envelope);
            lost += envelope.events.len() as u64;
        }
        if let (Some(reader), true) = (&self.reader, lost > 0) {
            reader.received_events.add(lost);
            reader.discarded_unintentional.add(lost);
            tracing::error!(
                component = %reader.id,
                "{lost} events waiting in the input buffer are lost: the component stopped reading it"
            );
        }
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
    /// sets the pace (backpressure). A downstream that has stopped does not
    /// keep the batch from the others; `Err(Closed)` then says that at
    /// least one of them did not get it.
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
        let mut outcome = Ok(());
        for sender in rest {
            let sent = match sender.reserve(count as usize, bytes).await {
                Ok(reservation) => reservation.send(batch.clone()),
                Err(e) => Err(e),
            };
            outcome = outcome.and(sent);
        }
        let sent = match last.reserve(count as usize, bytes).await {
            Ok(reservation) => reservation.send(batch),
            Err(e) => Err(e),
        };
        outcome = outcome.and(sent);
        if outcome.is_ok() {
            self.sent_events.add(count);
        }
        outcome
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
        // One downstream (the usual case): what `send_reserved` does with
        // one reservation, without the vector of them (an allocation).
        if let [sender] = &self.senders[..] {
            let Some(reservation) = sender.try_reserve(count, bytes)? else {
                return Ok(Some((count, bytes)));
            };
            reservation.send(batch)?;
            self.sent_events.add(count as u64);
            return Ok(None);
        }
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
    /// reservation each, in order). A downstream that stopped after its room
    /// was reserved does not keep the batch from the others (`Err(Closed)`
    /// then says that one did not get it).
    pub fn send_reserved(
        &self,
        mut reservations: Vec<Reservation<'_>>,
        batch: Batch,
    ) -> Result<(), SendError> {
        let count = batch.len() as u64;
        let last = reservations.pop();
        let mut outcome = Ok(());
        for reservation in reservations {
            outcome = outcome.and(reservation.send(batch.clone()));
        }
        if let Some(last) = last {
            outcome = outcome.and(last.send(batch));
        }
        if outcome.is_ok() {
            self.sent_events.add(count);
        }
        outcome
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
fn register_buffer_gauge(metrics: &ComponentMetrics, sender: &BufferSender) {
    let max_bytes = sender.max_bytes as usize;
    let events = sender.queued.clone();
    let bytes = sender.queued.clone();
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
        move || events.events.load(Ordering::Relaxed) as f64,
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
        move || bytes.bytes.load(Ordering::Relaxed) as f64,
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
            let context = Counted::new(context);
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

    /// Puts `batch` in the channel as if its room had been reserved while
    /// the receiver was merging (senders on other workers refill a buffer
    /// as a merge takes from it; a test on one thread cannot interleave so).
    fn refilled(tx: &BufferSender, batch: Batch, byte_size: usize) {
        let spare = |n: usize| {
            Arc::new(Semaphore::new(n.max(1)))
                .try_acquire_many_owned(n.max(1) as u32)
                .expect("spare permits")
        };
        tx.queued.add(batch.len(), byte_size);
        let envelope = Envelope {
            _room: spare(batch.len()),
            _bytes: spare(byte_size),
            events: batch,
            byte_size,
        };
        assert!(tx.tx.send(envelope).is_ok());
    }

    #[tokio::test]
    async fn a_merge_stops_at_max_events_and_the_byte_budget_keeping_the_rest_first_in_line() {
        let (tx, mut rx) = buffer(100_000, 10_000);
        refilled(&tx, batch(400), 100);
        refilled(&tx, batch(400), 100);
        refilled(&tx, batch(400), 100);
        // 800 + 400 would pass 1,000 events: the third stays, counted as waiting.
        assert_eq!(rx.recv_merged(1000).await.map(|b| b.len()), Some(800));
        assert_eq!(tx.buffered_events(), 400);
        assert_eq!(tx.buffered_bytes(), 100);
        // By bytes: 6,000 + 6,000 would pass the 10,000-byte budget. The
        // first batch is always taken, even one over the budget.
        refilled(&tx, batch(1), 6_000);
        refilled(&tx, batch(1), 6_000);
        refilled(&tx, batch(1), 30_000);
        assert_eq!(rx.recv_merged(1000).await.map(|b| b.len()), Some(401));
        assert_eq!(tx.buffered_bytes(), 36_000);
        assert_eq!(rx.recv_merged(1000).await.map(|b| b.len()), Some(1));
        assert_eq!(rx.recv_merged(1000).await.map(|b| b.len()), Some(1));
        assert_eq!(tx.buffered_events(), 0);
        assert_eq!(tx.buffered_bytes(), 0);
        // What is held is what `recv` and `try_recv` return first.
        refilled(&tx, batch(1), 9_000);
        refilled(&tx, batch(2), 9_000);
        refilled(&tx, batch(3), 9_000);
        assert_eq!(rx.recv_merged(1000).await.map(|b| b.len()), Some(1));
        assert_eq!(rx.try_recv().map(|b| b.len()), Some(2));
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_gauges_count_what_waits_not_the_room_promised_to_a_waiting_sender() {
        let (tx, mut rx) = buffer(10, usize::MAX);
        tx.send(batch(8)).await.expect("fits");
        // A sender of 6 waits; when 8 leave, the room it takes is not
        // "waiting events" until its batch is in.
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(batch(6)).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        // The semaphore has handed the waiter the 2 free permits already.
        assert_eq!(tx.room.available_permits(), 0);
        assert_eq!(tx.buffered_events(), 8);
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(8));
        assert_eq!(tx.buffered_events(), 0);
        assert_eq!(waiting.await.expect("task"), Ok(()));
        assert_eq!(tx.buffered_events(), 6);
    }

    #[tokio::test]
    async fn a_stopped_downstream_does_not_keep_the_batch_from_the_others() {
        let (first, first_rx) = buffer(100, usize::MAX);
        let (second, mut second_rx) = buffer(100, usize::MAX);
        let sent = Counter::default();
        let fanout = Fanout::new(vec![first, second], sent.clone(), Counter::default());
        drop(first_rx);
        assert_eq!(fanout.send(batch(3)).await, Err(SendError::Closed));
        assert_eq!(second_rx.try_recv().map(|b| b.len()), Some(3));
        assert_eq!(sent.get(), 0, "not sent on every downstream");
        // The same when room was reserved before the downstream stopped.
        let (third, third_rx) = buffer(100, usize::MAX);
        let (fourth, mut fourth_rx) = buffer(100, usize::MAX);
        let fanout = Fanout::new(vec![third, fourth], sent.clone(), Counter::default());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let reservations = fanout.reserve_by(2, 10, deadline).await.expect("room");
        drop(third_rx);
        assert_eq!(
            fanout.send_reserved(reservations, batch(2)),
            Err(SendError::Closed)
        );
        assert_eq!(fourth_rx.try_recv().map(|b| b.len()), Some(2));
    }

    /// One downstream or two, `send_now_or_size` sends the batch to each,
    /// counts it sent once, and a stopped downstream is `Closed`, not sent.
    #[tokio::test]
    async fn a_batch_sent_now_is_counted_once_and_a_stopped_downstream_is_closed() {
        for downstreams in [1, 2] {
            let sent = Counter::default();
            let (senders, mut receivers): (Vec<_>, Vec<_>) =
                (0..downstreams).map(|_| buffer(100, usize::MAX)).unzip();
            let fanout = Fanout::new(senders, sent.clone(), Counter::default());
            assert_eq!(fanout.send_now_or_size(batch(3)), Ok(None));
            for rx in &mut receivers {
                assert_eq!(rx.try_recv().map(|b| b.len()), Some(3));
            }
            assert_eq!(sent.get(), 3, "{downstreams}");
            drop(receivers.remove(0));
            assert_eq!(
                fanout.send_now_or_size(batch(2)),
                Err(SendError::Closed),
                "{downstreams}"
            );
            assert_eq!(sent.get(), 3, "{downstreams}");
        }
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
        // All the room is taken; the gauge says what waits.
        assert_eq!(tx.room.available_permits(), 0);
        assert_eq!(tx.buffered_events(), 50);
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(50));
    }
}
