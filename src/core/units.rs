//! Units the core must not mix up: a chunk's [`Seq`] and a point in time in [`Micros`]. Both
//! are u64 underneath, and the missing set's and the repair machine's calls take several of
//! each side by side; these types make swapping them a compile error.

use std::fmt;
use std::ops::Add;

/// A chunk's sequence number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

impl Seq {
    /// The seq after this one (saturating at the end of u64: a hostile neighbour may name it).
    pub fn next(self) -> Seq {
        Seq(self.0.saturating_add(1))
    }

    /// `n` seqs earlier, or 0.
    pub fn back(self, n: u64) -> Seq {
        Seq(self.0.saturating_sub(n))
    }

    /// `n` seqs later, saturating.
    pub fn ahead(self, n: u64) -> Seq {
        Seq(self.0.saturating_add(n))
    }

    /// Seqs from `self` up to and including `last` (empty if `last` is earlier).
    pub fn through(self, last: Seq) -> impl Iterator<Item = Seq> {
        (self.0..=last.0).map(Seq)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A point in time: µs since the UNIX epoch, as the driver and the simulator pass it in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(pub u64);

impl Micros {
    /// µs from `earlier` to this time (0 if `earlier` is later).
    pub fn since(self, earlier: Micros) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A time plus a duration in µs.
impl Add<u64> for Micros {
    type Output = Micros;
    fn add(self, us: u64) -> Micros {
        Micros(self.0.saturating_add(us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_and_times_saturate_at_the_ends() {
        assert_eq!(Seq(u64::MAX).next(), Seq(u64::MAX));
        assert_eq!(Seq(3).back(10), Seq(0));
        assert_eq!(
            Seq(5).through(Seq(7)).collect::<Vec<_>>(),
            [Seq(5), Seq(6), Seq(7)]
        );
        assert_eq!(Seq(7).through(Seq(5)).count(), 0);
        assert_eq!(Micros(u64::MAX) + 5, Micros(u64::MAX));
        assert_eq!(Micros(10).since(Micros(25)), 0);
        assert_eq!(Micros(25).since(Micros(10)), 15);
    }
}
