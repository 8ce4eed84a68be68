//! Moving up: a fed stripe looks again for a parent nearer the seed. Every hop adds a
//! link's delay to every chunk of the stripe, and trees built while peers joined stay as deep
//! as the order of the joins made them. The new parent is asked first; the old one is left
//! only once it accepts (`StripeTree::on_subscribe_reply`).

use super::{delay_via, Place, StripeTree};
use crate::core::config::{MOVE_UP_EVERY_US, MOVE_UP_GAIN_US, TICK_US};
use crate::core::neighbours::Neighbours;
use crate::core::outbox::Outbox;
use crate::core::rng::Rng;
use crate::proto::wire::Role;

impl StripeTree {
    /// Every [`MOVE_UP_EVERY_US`] (every tick before the stream begins) a fed stripe looks
    /// for a parent nearer the seed in delay ([`delay_via`]) than its own by
    /// [`MOVE_UP_GAIN_US`], with room (in its own stripe, room or a leaf to displace, as in
    /// [`StripeTree::choose_parent`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn move_up(
        &mut self,
        now: u64,
        stripe: u8,
        before_stream: bool,
        place: &Place,
        neighbours: &Neighbours,
        rng: &mut Rng,
        out: &mut Outbox,
    ) {
        let Some(s) = self.stripes.get_mut(stripe as usize) else {
            return;
        };
        // Before the stream begins a move costs nothing: every tick, not every second. Peers
        // that joined a second before the stream first looked up just as it began, and the
        // roots let leaves go for them, which then lacked the stripe until another parent
        // took them: 44 of a 50-peer run's 82 moves came in the stream's first 0.2 s, and
        // 162 of its 186 requests after such an Unsubscribe (bl-sim, 8 s, the stream at 2 s,
        // peers joining over the first second, seed 1).
        let every = match before_stream {
            true => TICK_US,
            false => MOVE_UP_EVERY_US,
        };
        let since = s.subscribed_at.max(s.looked_up_at);
        if s.pending.is_some() || now < since + every {
            return;
        }
        s.looked_up_at = now;
        // An adopter's depth in this stripe is not known: any member with room is better.
        let current = match s.parent.and_then(|p| neighbours.get(&p)) {
            Some(n) if n.role == Role::Seed => return,
            Some(n) if n.member == Some(stripe) => delay_via(n),
            Some(_) => u64::MAX / 2,
            None => return,
        };
        let Some(to) = self.choose_parent(now, stripe, place, neighbours, rng) else {
            return;
        };
        let better = neighbours.get(&to).is_some_and(|n| {
            let room = n.spare > 0 || place.member == Some(stripe);
            let member = n.member == Some(stripe);
            n.role == Role::Peer && member && room && delay_via(n) + MOVE_UP_GAIN_US < current
        });
        if better {
            self.subscribe(now, to, stripe, place, out);
        }
    }
}
