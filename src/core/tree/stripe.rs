//! A child's view of one stripe: its parent, what that parent pushed, and the Subscribe in
//! flight ([`super::StripeTree`] holds one per stripe).

use std::net::SocketAddr;

use super::PendingSubscribe;
use crate::core::config::STARVED_MIN_CHUNKS;

/// This node's view of one stripe.
#[derive(Debug, Clone)]
pub(super) struct Stripe {
    pub(super) parent: Option<SocketAddr>,
    pub(super) subscribed_at: u64,
    pub(super) pending: Option<PendingSubscribe>,
    /// Newest seq received, to notice a stalled parent.
    pub(super) newest: Option<u64>,
    /// When its last chunk arrived.
    pub(super) heard: u64,
    /// Chunks the present parent pushed since it took us (duplicates too).
    pub(super) pushes: u64,
    /// The parent's share of the stripe, counted over windows of
    /// [`STALL_US`](crate::core::config::STALL_US) from the subscription on (see
    /// [`StripeTree::maintain`](super::StripeTree::maintain)).
    pub(super) window: PushWindow,
    /// When we last looked for a shallower parent.
    pub(super) looked_up_at: u64,
    /// Our last Subscribe, if it went void unanswered (see
    /// [`StripeTree::on_subscribe_reply`](super::StripeTree::on_subscribe_reply)).
    pub(super) voided: Option<PendingSubscribe>,
    /// The parent took us holding its pushes until a keyframe, and playout has not started
    /// ([`hold`](super::hold)).
    pub(super) held: bool,
    /// Playout started while the parent still held for us: it is let go if it has pushed
    /// nothing by then ([`hold`](super::hold)).
    pub(super) release_due: Option<u64>,
    /// The seed, our parent in this stripe, let us go (a root let go as the swarm settled,
    /// or displaced by an older member), and no parent has taken us since: the members we
    /// ask are told first that we are detached
    /// ([`StripeTree::maintain`](super::StripeTree::maintain)).
    pub(super) let_go_by_seed: bool,
}

/// Over one window: new chunks of a stripe (from anyone), and chunks its parent sent
/// (duplicates too).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PushWindow {
    pub(super) since: u64,
    pub(super) new: u32,
    pub(super) from_parent: u32,
}

impl PushWindow {
    pub(super) fn starting(now: u64) -> PushWindow {
        PushWindow {
            since: now,
            ..PushWindow::default()
        }
    }

    /// The parent sent under half of what the stripe brought. Replays of old chunks (a liar
    /// sends one with every Have) counted as pushes under the first rule (`pushes == 0`), so a
    /// parent that withheld its stripe was kept while repairs from others carried it.
    pub(super) fn starved(&self) -> bool {
        self.new >= STARVED_MIN_CHUNKS && self.from_parent * 2 < self.new
    }
}

impl Stripe {
    /// The parent pushed nothing for longer than `span` since it took us and since the
    /// stream `began` ([`StripeTree::began`](super::StripeTree::began)): before that, every
    /// parent pushes nothing.
    pub(super) fn pushed_nothing_for(&self, span: u64, began: Option<u64>, now: u64) -> bool {
        self.pushes == 0 && began.is_some_and(|b| now > self.subscribed_at.max(b) + span)
    }

    pub(super) fn new(heard: u64) -> Stripe {
        Stripe {
            parent: None,
            subscribed_at: 0,
            pending: None,
            newest: None,
            heard,
            pushes: 0,
            window: PushWindow::starting(heard),
            looked_up_at: 0,
            voided: None,
            held: false,
            release_due: None,
            let_go_by_seed: false,
        }
    }
}
