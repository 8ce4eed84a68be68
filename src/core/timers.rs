//! The core's timer table: one deadline per [`Timer`], as in quinn-proto. The facade asks it
//! for the earliest one ([`crate::core::node::Node::poll_timeout`]) and, on a timeout, which
//! have expired.

use crate::core::units::Micros;

/// Everything the core waits for by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Maintenance and Haves, every [`crate::core::config::TICK_US`].
    Tick,
    /// The next missing chunk whose request is due.
    Repair,
    /// Peer: the stream ended and playout stops waiting for what is still missing.
    EndDeadline,
    /// The node has finished its work and stops serving.
    Linger,
}

const TIMERS: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct Timers([Option<Micros>; TIMERS]);

impl Timers {
    fn slot(timer: Timer) -> usize {
        match timer {
            Timer::Tick => 0,
            Timer::Repair => 1,
            Timer::EndDeadline => 2,
            Timer::Linger => 3,
        }
    }

    pub fn get(&self, timer: Timer) -> Option<Micros> {
        self.0[Self::slot(timer)]
    }

    pub fn set(&mut self, timer: Timer, at: Micros) {
        self.0[Self::slot(timer)] = Some(at);
    }

    /// Sets `timer` to `at` or leaves it cleared.
    pub fn set_or_clear(&mut self, timer: Timer, at: Option<Micros>) {
        self.0[Self::slot(timer)] = at;
    }

    /// Moves `timer` to `at` if that is sooner (or it was not set); `None` changes nothing.
    pub fn set_earlier(&mut self, timer: Timer, at: Option<Micros>) {
        if let Some(at) = at {
            let slot = &mut self.0[Self::slot(timer)];
            *slot = Some(slot.map_or(at, |t| t.min(at)));
        }
    }

    pub fn clear(&mut self, timer: Timer) {
        self.0[Self::slot(timer)] = None;
    }

    /// Whether `timer` is set and due at `now`.
    pub fn expired(&self, timer: Timer, now: Micros) -> bool {
        self.get(timer).is_some_and(|t| now >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_moves_only_earlier_and_expires_at_its_time() {
        let mut t = Timers::default();
        assert!(!t.expired(Timer::Repair, Micros(u64::MAX)));
        t.set_earlier(Timer::Repair, Some(Micros(50)));
        t.set_earlier(Timer::Repair, Some(Micros(80)));
        t.set_earlier(Timer::Repair, None);
        assert_eq!(t.get(Timer::Repair), Some(Micros(50)));
        assert!(!t.expired(Timer::Repair, Micros(49)) && t.expired(Timer::Repair, Micros(50)));
        t.clear(Timer::Repair);
        assert_eq!(t.get(Timer::Repair), None);
    }
}
