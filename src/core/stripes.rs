//! Stripes: the stream cut into K sub-streams by `seq mod K`, and sets of them.

use serde::{Deserialize, Serialize};

/// The most stripes a stream may have: bl-seed's `--stripes`, bl-sim's and a Welcome's
/// stripe count are all checked against it. 32 stripes of a 2 Mb/s stream are 62 kb/s each,
/// already less than one chunk per tree hop per 100 ms tick.
pub const MAX_STRIPES: u8 = 32;

/// The stripe chunk `seq` belongs to when the stream has `stripes` stripes.
pub fn stripe_of(seq: u64, stripes: u8) -> u8 {
    (seq % u64::from(stripes.max(1))) as u8
}

/// A set of stripes (bit s = stripe s). Stripes at or beyond [`MAX_STRIPES`] are never
/// members: inserting one does nothing, asking for one says no.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeSet(u32);

impl StripeSet {
    pub const EMPTY: StripeSet = StripeSet(0);

    fn bit(stripe: u8) -> u32 {
        if stripe < MAX_STRIPES {
            1 << stripe
        } else {
            0
        }
    }

    pub fn contains(self, stripe: u8) -> bool {
        self.0 & Self::bit(stripe) != 0
    }

    pub fn insert(&mut self, stripe: u8) {
        self.0 |= Self::bit(stripe);
    }

    pub fn remove(&mut self, stripe: u8) {
        self.0 &= !Self::bit(stripe);
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// The stripes in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        (0..MAX_STRIPES).filter(move |s| self.contains(*s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_beyond_the_limit_are_never_members() {
        let mut set = StripeSet::EMPTY;
        set.insert(3);
        set.insert(MAX_STRIPES);
        set.insert(200);
        assert_eq!(set.len(), 1);
        assert!(set.contains(3) && !set.contains(MAX_STRIPES) && !set.contains(200));
        set.remove(3);
        assert!(set.is_empty());
        assert_eq!(stripe_of(10, 4), 2);
        assert_eq!(
            stripe_of(10, 0),
            0,
            "a stream of zero stripes is one stripe"
        );
    }
}
