//! How late the event loop ran against when it was due: the figure that tells a node the
//! machine left it unrun (a scheduler stall) from a slow path.
//!
//! On loopback, 51 nodes on 2 cores, a chunk was now and then held up 300–400 ms on the way
//! though the kernel dropped no datagram (docs/PERFORMANCE.md, "Loopback runs at 007f53a"),
//! and those were the runs with repairs and duplicates. A neighbour cannot tell a stalled
//! process from a slow path; the process itself sees a stall against its own timers (one is
//! due at least every 100 ms while the stream flows), and says so in its figures. A stall
//! that ends before the next timer was due goes unseen.

use crate::core::config::REPAIR_DELAY_US;
use crate::core::stats::Report;

/// The loop's lateness, over the node's life.
#[derive(Debug, Default)]
pub struct WakeLag {
    /// The longest the loop ran after it was due, in µs.
    pub max_us: u64,
    /// Times it ran [`REPAIR_DELAY_US`] or more after it was due: the shortest a neighbour
    /// waits before it asks another for a chunk this node should have pushed (once it knows
    /// a later one).
    pub stalls: u64,
    last_ran_at: Option<u64>,
}

impl WakeLag {
    /// The loop ran at `ran_at` (µs); its next timer was due at `due` (absolute, as the core
    /// asked). It was late by the time since that timer, or, when the timer was due before
    /// the loop last ran (it had work left over), by the whole turn since then: a process
    /// preempted in the middle of its work is as unavailable to its neighbours as one that
    /// woke late.
    pub fn note(&mut self, due: u64, ran_at: u64) {
        let since = self.last_ran_at.map_or(due, |last| due.max(last));
        self.last_ran_at = Some(ran_at);
        let lag = ran_at.saturating_sub(since);
        if lag >= REPAIR_DELAY_US {
            self.stalls += 1;
        }
        self.max_us = self.max_us.max(lag);
    }

    /// Puts the figures in the node's report (`--stats-json`, `/stats.json`).
    pub fn fill(&self, report: &mut Report) {
        report.wake_lag_max_ms = Some(self.max_us as f64 / 1000.0);
        report.stalls = Some(self.stalls);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_wake_and_a_long_turn_count_as_stalls_and_an_early_wake_does_not() {
        let mut lag = WakeLag::default();
        // Due at 10 ms, ran at 10.5 ms: on time.
        lag.note(10_000, 10_500);
        // A datagram woke it at 12 ms, before its timer (due at 40 ms): not late.
        lag.note(40_000, 12_000);
        assert_eq!(lag.stalls, 0);
        assert_eq!(lag.max_us, 500);
        // Due at 20 ms, ran at 150 ms: 130 ms late.
        lag.note(20_000, 150_000);
        assert_eq!(lag.stalls, 1);
        assert_eq!(lag.max_us, 130_000);
        // Its timer was due already when it last ran (at 150 ms) and it ran again at 210 ms:
        // its turn took 60 ms.
        lag.note(100_000, 210_000);
        assert_eq!(lag.stalls, 2);
        assert_eq!(lag.max_us, 130_000);
        // 49 ms is under a neighbour's wait.
        lag.note(210_000, 259_000);
        assert_eq!(lag.stalls, 2);
    }
}
