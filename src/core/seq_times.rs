//! When each recent seq was last sent, in a small ring by seq: the push log's times and the
//! seed's spread repairs ([`crate::core::repair`]). An old seq overwritten by a newer one is
//! forgotten, as if never sent.

/// Seqs remembered: about half a second at 2 Mb/s (221 chunks a second), the push log's
/// longest crossing window and the seed's spread, and small, since every simulated node has
/// one or two. At higher rates a seq is forgotten sooner: a crossing request is answered
/// (one duplicate) and the seed serves a chunk again, never less than before either rule.
const SLOTS: usize = 128;

#[derive(Debug, Default)]
pub struct SeqTimes {
    /// (seq + 1, when): 0 is an empty slot. Allocated on the first note: most peers never
    /// serve the seed's kind of repair.
    slots: Vec<(u64, u64)>,
}

impl SeqTimes {
    pub fn note(&mut self, seq: u64, now: u64) {
        if self.slots.is_empty() {
            self.slots = vec![(0, 0); SLOTS];
        }
        if let Some(slot) = self.slots.get_mut(seq as usize % SLOTS) {
            *slot = (seq.wrapping_add(1), now);
        }
    }

    pub fn at(&self, seq: u64) -> Option<u64> {
        let (s, at) = *self.slots.get(seq as usize % SLOTS)?;
        (s == seq.wrapping_add(1)).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seq_is_forgotten_once_a_newer_one_takes_its_slot() {
        let mut times = SeqTimes::default();
        assert_eq!(times.at(5), None);
        times.note(5, 100);
        assert_eq!(times.at(5), Some(100));
        assert_eq!(times.at(5 + SLOTS as u64), None);
        times.note(5 + SLOTS as u64, 200);
        assert_eq!(times.at(5), None);
        assert_eq!(times.at(5 + SLOTS as u64), Some(200));
    }
}
