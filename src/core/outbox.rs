//! What the core emits: datagrams to send, events for the driver, and the counters of both.
//! Every sub-machine is handed the outbox (none holds it); the facade drains it through
//! [`crate::core::node::Node::poll_output`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::core::stats::NodeStats;
use crate::media::chunk::{Chunk, MAX_DATAGRAM};
use crate::proto::wire::{self, Message};

/// A datagram to send: the driver encodes it with [`wire::encode`]; `len` is its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub message: Message,
    pub len: usize,
}

/// Something the driver must act on.
#[derive(Debug)]
pub enum Event {
    /// Peer: write this chunk to stdout, now.
    Play(Arc<Chunk>),
    /// Something worth a line on stderr.
    Warning(String),
    /// A bug in the core (it tried to send what cannot be sent): worth a line on stderr, and
    /// the simulator fails the run on it.
    Internal(String),
    /// All done: the driver exits, with a status that says how it ended.
    Finished(Finish),
}

/// How a node's work ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Peer: played the stream to its signed end. Seed: served it to its end.
    Done,
    /// Peer: the stream had ended before playout could start: nothing was played.
    EndedBeforeStart,
    /// Peer: gave up, for the reason given (no answer, no data, another stream).
    GaveUp(String),
}

/// What the driver does next: send, act, or sleep until the time given.
#[derive(Debug)]
pub enum Output {
    Transmit(Transmit),
    Event(Event),
    /// Nothing queued: call [`crate::core::node::Node::handle_timeout`] at this time (µs).
    Timeout(u64),
}

/// Once drained, a queue gives back the room a burst left it: playout's start plays a few
/// hundred chunks at once, a tick's Haves go to dozens of neighbours, and every node kept
/// that room for good (massif, 2,000 peers: 10 KB a peer across the outbox's two queues;
/// 5.6 KB still when only rooms past 64 were given back). A burst past 16 is regrown and
/// given back each time (a tick's Haves: a few reallocations beside dozens of datagrams);
/// bl-sim's user time did not move (1,000 peers x 10 s: 10.05 / 10.26 s before, 10.03 /
/// 10.27 s after).
fn release_burst<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() > 16 {
        queue.shrink_to(8);
    }
}

#[derive(Debug, Default)]
pub struct Outbox {
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Counted as things happen: the sub-machines count what they drop, serve and refuse.
    pub stats: NodeStats,
}

impl Outbox {
    pub fn send(&mut self, to: SocketAddr, message: &Message) {
        self.send_owned(to, message.clone());
    }

    pub fn send_owned(&mut self, to: SocketAddr, message: Message) {
        let len = wire::encoded_len(&message);
        self.send_sized(to, message, len);
    }

    /// Queues `message` whose encoded size `len` the caller already knows (a chunk sent to
    /// several children is sized once).
    pub fn send_sized(&mut self, to: SocketAddr, message: Message, len: usize) {
        if len > MAX_DATAGRAM {
            let what = format!("internal: {} message of {len} bytes", message.kind());
            self.events.push_back(Event::Internal(what));
            return;
        }
        self.stats.count_sent(message.kind_index(), len);
        self.transmits.push_back(Transmit { to, message, len });
    }

    pub fn event(&mut self, event: Event) {
        self.events.push_back(event);
    }

    pub fn warn(&mut self, warning: String) {
        self.events.push_back(Event::Warning(warning));
    }

    /// A datagram we drop unread (banned sender, undecodable, not allowed from a stranger).
    pub fn count_dropped(&mut self) {
        self.stats.counters.datagrams_dropped += 1;
    }

    pub fn pop_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front();
        release_burst(&mut self.transmits);
        t
    }

    pub fn pop_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        release_burst(&mut self.events);
        e
    }

    pub fn queued(&self) -> usize {
        self.transmits.len() + self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_burst_leaves_no_room_behind() {
        let mut out = Outbox::default();
        let to = SocketAddr::from(([127, 0, 0, 1], 7000));
        for _ in 0..300 {
            out.send(to, &Message::Goodbye);
            out.warn("w".into());
        }
        assert_eq!(std::iter::from_fn(|| out.pop_transmit()).count(), 300);
        assert_eq!(std::iter::from_fn(|| out.pop_event()).count(), 300);
        assert!(out.transmits.capacity() <= 16 && out.events.capacity() <= 16);
        assert_eq!(out.stats.sent.get("goodbye").datagrams, 300);
    }
}
