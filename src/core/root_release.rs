//! The seed's release of root slots it took beyond its budget. An extra root is taken for a
//! stripe whose members look starved ([`crate::core::guard::Guard::is_starved`]): below a
//! withholder, or in an honest stripe whose tree is still forming while peers join fast.
//! Kept for good, each cost a quarter of a stream copy of the seed's upload for the rest of
//! the broadcast, and the honest kind is the common one (bl-sim, 1,000 peers × 20 s, seed 1:
//! two extra roots 1.2 and 1.6 s into the stream, source amplification 1.44 → 2.00).
//!
//! So the seed remembers the stripes it took extra roots for, and once no stripe has looked
//! starved for a calm spell it lets one root of the oldest such stripe go, unless the stripe
//! has looked withheld at any tick ([`crate::core::guard::Guard::looks_withheld`]; judged
//! only when the root was taken, withholders' seed 6 at 1,000 peers lost 0.5 % of the
//! stream); after another calm spell, the next. Letting go of any root beyond the budget
//! instead let go of an honest root beside a withholder (bl-sim, 1,000 peers,
//! `--withholders 4`, seeds 1 and 2: its stripe starved a second later). A stripe that looks
//! starved again within a calm spell of a release doubles the spell, up to [`MAX_STRIKES`]
//! times; a release that a whole calm spell follows halves it again.

use crate::core::config::EXTRA_ROOT_CALM_US;
use crate::core::stripes::StripeSet;

/// Doublings of the calm spell at most: 4 s grows to 64 s.
pub const MAX_STRIKES: u8 = 4;
/// Extra roots remembered at most: the seed takes at most K beyond its budget at once.
const REMEMBERED: usize = crate::core::stripes::MAX_STRIPES as usize;

#[derive(Debug, Default)]
pub struct RootRelease {
    /// When a stripe last looked starved.
    last_unrest: u64,
    /// When a root was last let go.
    last_release: Option<u64>,
    /// Releases followed by a starved stripe within the calm spell, less one for each
    /// release a whole calm spell followed.
    strikes: u8,
    /// A release was made, and neither a starved stripe nor the end of its calm spell has
    /// been seen since.
    watching: bool,
    /// The stripes of the extra roots taken and not yet answered by a release, oldest first.
    taken: Vec<u8>,
    /// Stripes whose extra roots are kept: they looked withheld at some tick, or starved
    /// again soon after a release.
    withheld: StripeSet,
    /// The stripe of the last release.
    released_stripe: Option<u8>,
    /// When the seed first held a chunk: the calm spell before it settles counts from here.
    began: Option<u64>,
    /// The swarm settled: roots beyond one per stripe were remembered for release.
    settled: bool,
    /// An extra root was kept for good: taken for a stripe that looked withheld, or one
    /// remembered for a stripe when it came to look so.
    extra_kept: bool,
}

impl RootRelease {
    /// The calm spell now: [`EXTRA_ROOT_CALM_US`], doubled per strike.
    pub fn calm_us(&self) -> u64 {
        EXTRA_ROOT_CALM_US << self.strikes.min(MAX_STRIKES)
    }

    /// Every tick: the stripes that look starved now. The stripe of the last release starved
    /// again within the calm spell is taken for withheld from then on (one of its remaining
    /// roots withholds it, as the stripe's starved members did not show when the extra root
    /// was taken): bl-sim, 1,000 peers × 20 s, `--withholders 4`, seed 6, released a root of
    /// a withheld stripe whose members had all left the withholder before the stripe looked
    /// starved. A release that the whole calm spell followed forgives one strike.
    pub fn note(&mut self, starved: StripeSet, now: u64) {
        let soon_after_release = self
            .last_release
            .is_some_and(|at| now < at + self.calm_us());
        if self.watching && !soon_after_release {
            // A release that a whole calm spell followed was right: one strike is forgiven,
            // as a backoff eases on success. Without this, four early strikes held every
            // later release of a broadcast hours long to 64 s of calm.
            self.strikes = self.strikes.saturating_sub(1);
            self.watching = false;
        }
        if starved.is_empty() {
            return;
        }
        if self.watching {
            self.strikes = self.strikes.saturating_add(1).min(MAX_STRIKES);
            if let Some(stripe) = self.released_stripe.filter(|s| starved.contains(*s)) {
                self.keep(stripe);
            }
        }
        self.watching = false;
        self.last_unrest = now;
    }

    /// The seed holds a chunk at `now`: the stream has begun, if it had not.
    pub fn began(&mut self, now: u64) {
        self.began.get_or_insert(now);
    }

    /// Whether the swarm settles now: a calm spell since the stream began and since the last
    /// starved stripe, and no extra root kept for good (a stripe that looked withheld while
    /// peers joined fast, and never had an extra root, does not count: bl-sim, 10,000 peers,
    /// seed 2, marked an honest stripe so 0.6 s into the stream). Once is enough.
    pub fn settle_due(&self, now: u64) -> bool {
        !self.settled
            && !self.extra_kept
            && self.began.is_some_and(|at| now >= at + self.calm_us())
            && self.due(now)
    }

    /// The swarm settles.
    pub fn settle(&mut self) {
        self.settled = true;
    }

    /// Settled, every tick: `roots[s]` roots feed stripe `s`, and all but one of each are
    /// remembered for release as extra roots are (those already remembered count), but for
    /// stripes that looked withheld. Every tick, not once: a stripe whose root left takes
    /// its new root from a budget the others no longer fill, and a second root taken for
    /// another stripe meanwhile would otherwise be kept for good.
    pub fn remember_surplus(&mut self, roots: &[usize]) {
        if !self.settled {
            return;
        }
        for (stripe, count) in (0u8..).zip(roots) {
            // A stripe that looked withheld keeps its roots (one may be the honest one
            // beside a withholder).
            if self.withheld.contains(stripe) {
                continue;
            }
            let remembered = self.taken.iter().filter(|s| **s == stripe).count();
            for _ in remembered + 1..*count {
                self.taken(stripe);
            }
        }
    }

    /// Whether the seed's budget holds one root per stripe. A stripe that looks withheld
    /// later keeps the extra roots taken for it, beyond this budget; the whole budget back
    /// as well only refilled the slots let go with whoever asked next (bl-sim, 1,000 peers,
    /// 5 % liars, seed 3: source amplification 1.82 → 2.00, 154 chunks skipped against 155).
    pub fn settled(&self) -> bool {
        self.settled
    }

    /// Whether a root beyond the budget may be let go now.
    pub fn due(&self, now: u64) -> bool {
        let calm = self.calm_us();
        now >= self.last_unrest + calm && self.last_release.is_none_or(|at| now >= at + calm)
    }

    /// An extra root was taken for `stripe`: remembered, unless the stripe's are kept.
    pub fn taken(&mut self, stripe: u8) {
        if self.withheld.contains(stripe) {
            self.extra_kept = true;
            return;
        }
        if self.taken.len() >= REMEMBERED {
            self.taken.remove(0);
        }
        self.taken.push(stripe);
    }

    /// `stripe` looks withheld now: its extra roots are kept from now on, whenever they were
    /// taken (it may look so only after its extra root was taken).
    pub fn keep(&mut self, stripe: u8) {
        self.extra_kept |= self.taken.contains(&stripe);
        self.withheld.insert(stripe);
        self.taken.retain(|s| *s != stripe);
    }

    /// The stripes of the extra roots remembered, oldest first.
    pub fn remembered(&self) -> Vec<u8> {
        self.taken.clone()
    }

    /// Forgets the oldest extra root remembered for `stripe`: a root of it was let go, or it
    /// has one root left.
    pub fn forget_one(&mut self, stripe: u8) {
        if let Some(at) = self.taken.iter().position(|s| *s == stripe) {
            self.taken.remove(at);
        }
    }

    /// A root of `stripe` was let go.
    pub fn released(&mut self, stripe: u8, now: u64) {
        self.last_release = Some(now);
        self.released_stripe = Some(stripe);
        self.watching = true;
    }

    /// The stripes whose extra roots are kept for good.
    pub fn kept(&self) -> StripeSet {
        self.withheld
    }

    /// Whether `stripe`'s extra roots are kept for good.
    pub fn keeps(&self, stripe: u8) -> bool {
        self.withheld.contains(stripe)
    }

    pub fn strikes(&self) -> u8 {
        self.strikes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALM: u64 = EXTRA_ROOT_CALM_US;

    fn set(stripe: u8) -> StripeSet {
        let mut s = StripeSet::EMPTY;
        s.insert(stripe);
        s
    }

    /// Extra roots of a stripe that looked withheld are kept; so are a stripe's that starved
    /// again soon after one of its roots was let go. Others are let go oldest first.
    #[test]
    fn a_withheld_stripe_keeps_its_extra_roots() {
        let mut r = RootRelease::default();
        r.taken(0);
        r.taken(1);
        r.keep(1);
        r.taken(2);
        r.taken(1);
        assert!(r.keeps(1) && !r.keeps(0));
        assert_eq!(r.remembered(), vec![0, 2]);
        r.forget_one(0);
        r.released(0, 1_000);
        // Stripe 0 starves again within the calm spell: kept from now on.
        r.note(set(0), 1_000 + CALM / 2);
        assert!(r.keeps(0));
        r.taken(0);
        assert_eq!(r.remembered(), vec![2]);
        // Stripe 2 looks withheld only later: kept all the same.
        r.keep(2);
        assert!(r.keeps(2) && r.remembered().is_empty());
    }

    /// A release waits for a calm spell after the last starved stripe and after the last
    /// release; a stripe starved again soon after a release doubles the spell, and a starved
    /// stripe long after one does not.
    #[test]
    fn a_release_waits_for_calm_and_a_starved_stripe_soon_after_doubles_the_wait() {
        let mut r = RootRelease::default();
        r.note(set(2), 1_000_000);
        assert!(!r.due(1_000_000 + CALM - 1));
        assert!(r.due(1_000_000 + CALM));
        let first = 1_000_000 + CALM;
        r.released(1, first);
        assert!(!r.due(first + CALM - 1), "one release per calm spell");
        // Starved again within the spell: a strike, and the spell doubles from then.
        r.note(set(2), first + CALM / 2);
        assert_eq!(r.strikes(), 1);
        r.note(set(2), first + CALM / 2 + 100_000);
        assert_eq!(r.strikes(), 1, "one strike per release");
        let calm_again = first + CALM / 2 + 100_000;
        assert!(!r.due(calm_again + CALM));
        assert!(r.due(calm_again + 2 * CALM));
        // Starved long after the next release: no strike, and the calm spell that followed
        // it forgives the one before.
        let second = calm_again + 2 * CALM;
        r.released(1, second);
        r.note(set(2), second + 3 * CALM);
        assert_eq!(r.strikes(), 0);
        // Strikes stop doubling at MAX_STRIKES.
        for i in 0..10u64 {
            let at = second + 3 * CALM + (i + 1) * 100 * CALM;
            r.released(1, at);
            r.note(set(2), at + 1);
        }
        assert_eq!(r.strikes(), MAX_STRIKES);
        assert_eq!(r.calm_us(), CALM << MAX_STRIKES);
    }

    /// A release that a whole calm spell follows forgives one strike, so a broadcast's early
    /// unrest does not hold its later releases to the longest spell for good.
    #[test]
    fn a_release_followed_by_a_calm_spell_forgives_a_strike() {
        let mut r = RootRelease::default();
        let mut at = 1_000_000;
        for _ in 0..MAX_STRIKES {
            r.released(0, at);
            r.note(set(0), at + 1);
            at += 100 * CALM;
        }
        assert_eq!(r.strikes(), MAX_STRIKES);
        // Calm ticks within the spell forgive nothing; the first tick after it, one strike.
        r.released(1, at);
        r.note(StripeSet::EMPTY, at + (CALM << MAX_STRIKES) - 1);
        assert_eq!(r.strikes(), MAX_STRIKES);
        r.note(StripeSet::EMPTY, at + (CALM << MAX_STRIKES));
        assert_eq!(r.strikes(), MAX_STRIKES - 1);
        r.note(StripeSet::EMPTY, at + 100 * CALM);
        assert_eq!(r.strikes(), MAX_STRIKES - 1, "one strike per release");
        // Every calm release after that forgives one more, down to none.
        for i in 0..u64::from(MAX_STRIKES) {
            let next = at + (i + 1) * 100 * CALM;
            r.released(1, next);
            r.note(StripeSet::EMPTY, next + (CALM << MAX_STRIKES));
        }
        assert_eq!(r.strikes(), 0);
        assert_eq!(r.calm_us(), CALM);
    }

    /// The swarm settles a calm spell after the stream began and after its last starved
    /// stripe, never once an extra root is kept for good; it remembers every root beyond one
    /// per stripe for release, counting extra roots already remembered, but for a stripe
    /// that looked withheld.
    #[test]
    fn the_swarm_settles_once_calm_and_remembers_every_stripes_roots_beyond_one() {
        let start = 50_000_000;
        // The calm spell counts from the stream's first chunk, not a later one.
        let mut first = RootRelease::default();
        assert!(
            !first.settle_due(start + CALM),
            "no chunk yet: the stream has not begun"
        );
        first.began(start);
        first.began(start + 1_000_000);
        assert!(!first.settle_due(start + CALM - 1));
        assert!(first.settle_due(start + CALM));
        let mut r = RootRelease::default();
        r.began(start);
        r.note(set(1), start + CALM / 2);
        assert!(
            !r.settle_due(start + CALM),
            "a stripe starved within the spell"
        );
        let calm = start + CALM / 2 + CALM;
        assert!(r.settle_due(calm));
        // Stripe 0 has one root; stripe 1 two, one of them an extra root already remembered;
        // stripe 2 three; stripe 3 two, and it looked withheld (no extra root taken for it).
        r.taken(1);
        r.keep(3);
        r.remember_surplus(&[1, 2, 3, 2]);
        assert_eq!(
            r.remembered(),
            vec![1],
            "nothing is remembered before settling"
        );
        assert!(r.settle_due(calm), "no extra root kept");
        r.settle();
        r.remember_surplus(&[1, 2, 3, 2]);
        assert!(
            r.settled() && !r.settle_due(calm + 10 * CALM),
            "settles once"
        );
        assert_eq!(r.remembered(), vec![1, 2, 2]);
        // Every tick: the same roots add nothing, a second root taken since is remembered.
        r.remember_surplus(&[2, 2, 3, 2]);
        assert_eq!(r.remembered(), vec![1, 2, 2, 0]);
        r.keep(2);
        assert!(
            r.settled(),
            "a withheld stripe keeps its extra roots beyond the budget"
        );
        assert_eq!(r.remembered(), vec![1, 0]);
        // Never settles once an extra root is kept for good, however it came to be.
        for taken_first in [true, false] {
            let mut w = RootRelease::default();
            w.began(start);
            if taken_first {
                w.taken(0);
                w.keep(0);
            } else {
                w.keep(0);
                w.taken(0);
            }
            assert!(!w.settle_due(start + 10 * CALM), "{taken_first}");
        }
    }
}
