//! Holds: a joiner that waits for the next keyframe plays nothing before it, yet its parents
//! pushed it every chunk from the moment they took it, about half a GOP of chunks thrown
//! away per join (bl-sim, 10,000 peers × 30 s: 132 chunks a peer, 2.35 points of the 16 %
//! overhead). So its Subscribe names the seq it waits after (`hold_after`), and a parent
//! pushes it nothing until the parent holds a keyframe past that seq: then it sends that
//! keyframe (whatever its stripe, so the joiner starts at the first parent to release) and
//! the stripe's chunks from it on. The joiner does not judge a parent by its pushes while it
//! waits ([`Stripe::awaits_release`]); once it has started, a parent that has pushed nothing
//! within [`RELEASE_GRACE_US`] is let go.
//!
//! Bounds: a hold lasts at most [`KEYFRAME_HOLD_MAX_US`] from the Subscribe that asked it,
//! then the parent pushes without a keyframe; a hold past what the parent believes exists
//! (a lie in the joiner's Welcome) is not kept; at most one hold per child, and only while it
//! is a child; only a Subscribe the parent newly accepts asks one (the node's
//! `on_subscribe`), and the chunks a release sends beyond the keyframe are charged to the
//! parent's repair budget.

use std::net::SocketAddr;

use super::{PushWindow, Stripe, StripeTree};
use crate::core::config::{KEYFRAME_HOLD_MAX_US, RELEASE_GRACE_US, STALL_US};

/// A child fed nothing until a keyframe past `after`, or until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hold {
    child: SocketAddr,
    after: u64,
    until: u64,
}

/// What a parent does with a child's Subscribe that asked it to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStart {
    /// Nothing to hold: push as usual.
    None,
    /// Held until a keyframe past the seq asked.
    Held,
    /// The parent already holds a keyframe past it: send it and the stripe from it now.
    ReleaseAt(u64),
}

impl Stripe {
    /// Our parent holds its pushes for us until a keyframe, and we have not started playing:
    /// it is judged only on being gone, for [`KEYFRAME_HOLD_MAX_US`] (its own bound) and a
    /// stall's time more.
    pub(super) fn awaits_release(&self, now: u64) -> bool {
        self.held && now < self.subscribed_at + KEYFRAME_HOLD_MAX_US + STALL_US
    }
}

impl StripeTree {
    /// Joiner: the seq our Subscribes ask parents to hold until a keyframe past, while we
    /// wait for one (`None`: push at once).
    pub fn set_hold_after(&mut self, after: Option<u64>) {
        self.hold_after = after;
    }

    /// Joiner: playout has started at a keyframe one parent released us with. The others
    /// are judged from now on, as if they had just taken us, and their stripes count as
    /// flowing for a moment: each releases once the keyframe reaches it, so what playout
    /// lacks of their stripes is not asked for at once (the repairs served rose 16 % when
    /// it was: bl-sim, 3,000 peers × 20 s, seed 1).
    pub fn started(&mut self, now: u64) {
        self.hold_after = None;
        for s in self.stripes.iter_mut().filter(|s| s.held) {
            s.held = false;
            s.subscribed_at = now;
            s.heard = now;
            s.window = PushWindow::starting(now);
            s.release_due = s.parent.map(|_| now + RELEASE_GRACE_US);
        }
    }

    /// Whether a stripe's parent may still be holding for us (a keyframe it pushes of
    /// another stripe is its release, not a stray feed).
    pub fn awaits_release(&self, now: u64) -> bool {
        self.stripes.iter().any(|s| s.awaits_release(now))
    }

    /// Parent: `child`, whose Subscribe we accepted, asked us to hold until a keyframe past
    /// `after` (or not: a hold it asked before is over). `latest_keyframe` and `newest` are
    /// ours.
    pub fn hold_for(
        &mut self,
        now: u64,
        child: SocketAddr,
        after: Option<u64>,
        latest_keyframe: Option<u64>,
        newest: Option<u64>,
        plausible_ahead: u64,
    ) -> HoldStart {
        self.end_hold(child);
        let Some(after) = after else {
            return HoldStart::None;
        };
        if let Some(k) = latest_keyframe.filter(|k| *k > after) {
            return HoldStart::ReleaseAt(k);
        }
        // Past anything we believe exists: the joiner was told a lie, and a hold would last
        // until it expired. Pushed at once, its playout finds the lie out from our chunks.
        if newest.is_some_and(|n| after > n.saturating_add(plausible_ahead)) {
            return HoldStart::None;
        }
        self.holds.push(Hold {
            child,
            after,
            until: now + KEYFRAME_HOLD_MAX_US,
        });
        self.children_stale = true;
        HoldStart::Held
    }

    /// `child` is held: it is left out of the pushes.
    pub(super) fn is_held(&self, child: &SocketAddr) -> bool {
        self.holds.iter().any(|h| h.child == *child)
    }

    /// Ends any hold for `child` (it left, or asked again).
    pub fn end_hold(&mut self, child: SocketAddr) {
        let before = self.holds.len();
        self.holds.retain(|h| h.child != child);
        self.children_stale |= self.holds.len() != before;
    }

    /// We now hold keyframe `seq`: the children held for one past what they waited after are
    /// released (returned); the caller sends them the keyframe and their stripes from it.
    pub fn release_holds(&mut self, seq: u64) -> Vec<SocketAddr> {
        if self.holds.is_empty() {
            return Vec::new();
        }
        let released: Vec<SocketAddr> = self
            .holds
            .iter()
            .filter(|h| seq > h.after)
            .map(|h| h.child)
            .collect();
        if !released.is_empty() {
            self.holds.retain(|h| seq <= h.after);
            self.children_stale = true;
        }
        released
    }

    /// Every tick: holds past [`KEYFRAME_HOLD_MAX_US`] end, and the children are pushed from
    /// now on (a stream whose keyframes are further apart, or a parent cut off from them).
    pub fn expire_holds(&mut self, now: u64) {
        let before = self.holds.len();
        self.holds.retain(|h| now < h.until);
        self.children_stale |= self.holds.len() != before;
    }

    /// Children held at present.
    pub fn held_children(&self) -> usize {
        self.holds.len()
    }
}
