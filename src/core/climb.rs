//! Climbing: a member of a stripe learns who feeds its parent, so that it can move up a
//! level, and a peer at its neighbour cap makes room for a younger member of its own stripe,
//! a child it may feed.
//!
//! Why: a member hangs only below older members of its stripe, and moves up only to one it
//! knows. The oldest members, nearest the root, sit at the neighbour cap, and a member that
//! greeted one was turned away; so the top levels fed as many leaves as members, and each
//! level of the member tree held about four times the one above where its slots (6–10)
//! allowed more (bl-sim, 3,000 peers: 5, 21, 89, 356 and 1,299 members at depths 1 to 5).
//! A leaf's place is not its subtree's: a member one level up takes its whole subtree up.
//!
//! How: every [`CLIMB_ASK_US`] a member whose parent in its stripe is a member below the
//! root asks that parent for peers; a parent answers a member child of its stripe with its
//! own parent first, and the child greets it even when it has all the neighbours it wants.
//! Once it is a neighbour, moving up (the tree) finds it nearer the seed and subscribes; a
//! full parent lets a leaf go for a member. At the cap a peer lets its farthest idle
//! neighbour go for a younger member of its stripe, and keeps [`CAP_KEEP_IDLE`] idle ones
//! (never an older member of its stripe, a parent or one asked to be).
//! The member let in must become a child within [`ROOM_GRACE_US`] and stay one, or it is
//! let go in turn: a claim to be a member of our stripe, which anyone can make, buys a
//! neighbour slot only for as long as we feed it, and our slots bound how many idle
//! neighbours such claims can push out. Likewise the peer a parent names is greeted beyond
//! our target one at a time, and let go unless it has become our parent within
//! [`CLIMB_ASK_US`]: a hostile parent cannot fill our neighbour slots with its friends.

use std::net::SocketAddr;

use crate::core::neighbours::Neighbours;
use crate::core::tree::Place;
use crate::proto::wire::{PeerInfo, Role};

/// How often a member asks its parent who feeds it.
pub const CLIMB_ASK_US: u64 = 4_000_000;
/// Idle neighbours (neither parent nor child) never let go to make room for a member: peer
/// exchange and repairs need some, and a flood of Confirms claiming to be members of our
/// stripe can replace no more than the rest.
pub const CAP_KEEP_IDLE: usize = 12;

/// How long a member let in at the cap has to subscribe: moving up looks every second.
pub const ROOM_GRACE_US: u64 = 3_000_000;
/// Members let in at the cap and not yet subscribed, at most: how many idle neighbours can
/// be on their way out at once.
pub const ROOM_PENDING_MAX: usize = 4;

#[derive(Debug, Default, Clone)]
pub struct Climb {
    next_ask: u64,
    /// Members let in at the cap, and when they must have subscribed by; kept while we
    /// feed them (at most our slots), and let go once we do not, after their grace.
    let_in: Vec<(SocketAddr, u64)>,
    /// The peer our parent named above it, greeted beyond our target, and until when it may
    /// stay without becoming our parent.
    greeted: Option<(SocketAddr, u64)>,
}

impl Climb {
    /// Whether a member whose parent in its stripe sits at `parent_depth` asks it now who is
    /// above it. A root's parent is the seed: nothing to climb to.
    pub fn due(&mut self, now: u64, parent_depth: u8) -> bool {
        if parent_depth < 2 || parent_depth == u8::MAX || now < self.next_ask {
            return false;
        }
        self.next_ask = now + CLIMB_ASK_US;
        true
    }

    /// At the neighbour cap, `from` confirmed its address, claiming to be a member of our
    /// stripe at `index`: the idle neighbour to let go for it, if it is younger than us and
    /// fewer than [`ROOM_PENDING_MAX`] let in before it still have to subscribe.
    #[allow(clippy::too_many_arguments)]
    pub fn make_room(
        &mut self,
        now: u64,
        from: SocketAddr,
        member: Option<u8>,
        index: u64,
        place: &Place,
        neighbours: &Neighbours,
        is_parent: impl Fn(&SocketAddr) -> bool,
    ) -> Option<SocketAddr> {
        if self.let_in.iter().filter(|(_, by)| now < *by).count() >= ROOM_PENDING_MAX {
            return None;
        }
        let let_in = &self.let_in;
        let idle = room_for_member(member, index, place, neighbours, |a| {
            is_parent(a) || let_in.iter().any(|(b, _)| b == a)
        })?;
        self.let_in.push((from, now + ROOM_GRACE_US));
        Some(idle)
    }

    /// Members let in at the cap whose grace is over and that we do not feed (any more):
    /// to be let go. Those we feed are watched until they leave.
    pub fn unsubscribed(&mut self, now: u64, neighbours: &Neighbours) -> Vec<SocketAddr> {
        let mut gone = Vec::new();
        self.let_in.retain(|(addr, by)| {
            let Some(n) = neighbours.get(addr) else {
                return false;
            };
            if now < *by || !n.children.is_empty() {
                return true;
            }
            gone.push(*addr);
            false
        });
        gone
    }

    /// Whether the peer our parent names above it may be greeted beyond our target now:
    /// one at a time.
    pub fn may_greet(&self) -> bool {
        self.greeted.is_none()
    }

    /// We greeted `addr`, named above our parent, beyond our target.
    pub fn greeting(&mut self, now: u64, addr: SocketAddr) {
        self.greeted = Some((addr, now + CLIMB_ASK_US));
    }

    /// The peer greeted above our parent, once its time is over: to be let go unless it
    /// feeds us or we feed it.
    pub fn stale_greeting(&mut self, now: u64) -> Option<SocketAddr> {
        let (addr, by) = self.greeted?;
        if now < by {
            return None;
        }
        self.greeted = None;
        Some(addr)
    }
}

/// What a parent names first to `from`, when `from` is a member of our stripe we feed: our
/// own parent in that stripe, if it is a peer (the seed takes no member it does not feed).
pub fn above_for(
    from: SocketAddr,
    place: &Place,
    our_parent: Option<SocketAddr>,
    neighbours: &Neighbours,
) -> Option<PeerInfo> {
    let stripe = place.member?;
    let child = neighbours.get(&from)?;
    if child.member != Some(stripe) || !child.children.contains(stripe) {
        return None;
    }
    let addr = our_parent?;
    let parent = neighbours.get(&addr)?;
    (parent.role == Role::Peer && parent.member == Some(stripe)).then_some(PeerInfo {
        addr,
        index: parent.index,
        member: stripe,
        lan: parent.lan,
    })
}

/// What the seed names first in a Peers answer to `from`, a root of `stripe` it let go: the
/// oldest root of the stripe older than it. A root let go finds a place only below an older
/// member of its stripe, and the oldest members know few: bl-sim, 50 peers × 8 s, the stream
/// at 2 s, seed 25, a root let go as the seed settled knew none, asked nobody, and its
/// subtree lived on repairs once the seed's handover ended.
pub fn root_for(from: SocketAddr, stripe: u8, neighbours: &Neighbours) -> Option<PeerInfo> {
    let asker = neighbours.get(&from)?;
    if asker.member != Some(stripe) {
        return None;
    }
    neighbours
        .iter()
        .filter(|(addr, n)| {
            **addr != from
                && n.role == Role::Peer
                && n.member == Some(stripe)
                && n.children.contains(stripe)
                && n.index < asker.index
        })
        .min_by_key(|(addr, n)| (n.index, **addr))
        .map(|(addr, n)| PeerInfo {
            addr: *addr,
            index: n.index,
            member: stripe,
            lan: n.lan,
        })
}

/// At the neighbour cap, the neighbour to let go for a younger member of our stripe that
/// confirmed its address: the farthest in measured round trip that we feed nothing, that
/// is not an older member of our stripe (a parent we may need) and that is not `kept` (our
/// parents, a peer we asked to feed us, members let in before), while more than
/// [`CAP_KEEP_IDLE`] such remain. A neighbour whose round trip was never measured is not
/// chosen: it would be "farthest", and the order among such ones is the attacker's to pick.
fn room_for_member(
    member: Option<u8>,
    index: u64,
    place: &Place,
    neighbours: &Neighbours,
    kept: impl Fn(&SocketAddr) -> bool,
) -> Option<SocketAddr> {
    if place.role != Role::Peer || member.is_none() || member != place.member {
        return None;
    }
    if index <= place.index {
        return None;
    }
    let idle = || {
        neighbours.iter().filter(|(a, n)| {
            n.role == Role::Peer && n.children.is_empty() && !place.is_elder(n) && !kept(a)
        })
    };
    if idle().count() <= CAP_KEEP_IDLE {
        return None;
    }
    idle()
        .filter_map(|(a, n)| Some((n.rtt_us?, *a)))
        .max()
        .map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::neighbours::Neighbour;
    use crate::core::stripes::StripeSet;

    fn at(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 9000 + i))
    }

    /// A peer of join index 50, member of stripe 1.
    const MEMBER_OF_1: Place = Place {
        role: Role::Peer,
        index: 50,
        member: Some(1),
        stripes: 4,
    };

    /// A peer neighbour of `index`, member of `member`, `rtt` ms away.
    fn peer(ns: &mut Neighbours, i: u16, index: u64, member: u8, rtt_ms: u64) {
        ns.insert(at(i), Neighbour::new(Role::Peer, index, Some(member), 0));
        ns.note_rtt(at(i), rtt_ms * 1000);
    }

    #[test]
    fn a_member_asks_who_is_above_its_parent_only_below_a_root_and_every_few_seconds() {
        let mut climb = Climb::default();
        assert!(!climb.due(0, 1), "a root's parent is the seed");
        assert!(!climb.due(0, u8::MAX), "a detached parent has nobody above");
        assert!(climb.due(0, 2));
        assert!(!climb.due(CLIMB_ASK_US - 1, 2));
        assert!(climb.due(CLIMB_ASK_US, 3));
    }

    #[test]
    fn a_parent_names_its_own_parent_to_a_member_child_of_its_stripe_only() {
        let mut ns = Neighbours::default();
        peer(&mut ns, 1, 10, 1, 20); // our parent in stripe 1
        peer(&mut ns, 2, 90, 1, 20); // a member child
        ns.get_mut(&at(2)).unwrap().children.insert(1);
        peer(&mut ns, 3, 91, 2, 20); // a leaf child of stripe 1
        ns.get_mut(&at(3)).unwrap().children.insert(1);
        peer(&mut ns, 4, 92, 1, 20); // a member of stripe 1 we do not feed
        let named = above_for(at(2), &MEMBER_OF_1, Some(at(1)), &ns);
        assert_eq!(
            named.map(|p| (p.addr, p.index, p.member)),
            Some((at(1), 10, 1))
        );
        assert_eq!(above_for(at(3), &MEMBER_OF_1, Some(at(1)), &ns), None);
        assert_eq!(above_for(at(4), &MEMBER_OF_1, Some(at(1)), &ns), None);
        // Below the seed there is nobody to name.
        ns.insert(at(5), Neighbour::new(Role::Seed, 0, None, 0));
        assert_eq!(above_for(at(2), &MEMBER_OF_1, Some(at(5)), &ns), None);
    }

    #[test]
    fn the_seed_names_a_root_it_let_go_the_oldest_root_of_its_stripe_older_than_it() {
        let mut ns = Neighbours::default();
        peer(&mut ns, 1, 3, 1, 20); // a root of stripe 1
        ns.get_mut(&at(1)).unwrap().children.insert(1);
        peer(&mut ns, 2, 2, 2, 20); // a root of stripe 1 of another stripe (a leaf)
        ns.get_mut(&at(2)).unwrap().children.insert(1);
        peer(&mut ns, 3, 5, 1, 20); // the root let go: fed nothing any more
        peer(&mut ns, 4, 1, 1, 20); // an older member of stripe 1, not a root
        let named = root_for(at(3), 1, &ns);
        assert_eq!(
            named.map(|p| (p.addr, p.index, p.member)),
            Some((at(1), 3, 1))
        );
        // A member older than every root is named none.
        peer(&mut ns, 5, 2, 1, 20);
        assert_eq!(root_for(at(5), 1, &ns), None);
        assert_eq!(
            root_for(at(2), 1, &ns),
            None,
            "not to a member of another stripe"
        );
    }

    /// Our parent (at(1)), a child we feed (at(2)), the seed, an older member of our stripe
    /// and a peer never timed, all far away, and `idle` idle peers, the farthest last.
    fn at_the_cap(idle: u16) -> Neighbours {
        let mut ns = Neighbours::default();
        peer(&mut ns, 1, 10, 1, 900);
        peer(&mut ns, 2, 60, 1, 800);
        ns.get_mut(&at(2)).unwrap().children.insert(1);
        ns.insert(at(3), Neighbour::new(Role::Seed, 0, None, 0));
        ns.note_rtt(at(3), 990_000);
        peer(&mut ns, 4, 20, 1, 950);
        ns.insert(at(5), Neighbour::new(Role::Peer, 300, Some(0), 0));
        for i in 0..idle {
            peer(&mut ns, 10 + i, 100 + u64::from(i), 0, 10 + u64::from(i));
        }
        ns
    }

    #[test]
    fn at_the_cap_the_farthest_idle_neighbour_makes_room_for_a_younger_member_of_our_stripe() {
        let ns = at_the_cap(CAP_KEEP_IDLE as u16 + 1);
        let farthest = at(10 + CAP_KEEP_IDLE as u16);
        let is_parent = |a: &SocketAddr| *a == at(1);
        let mut climb = Climb::default();
        let room = |climb: &mut Climb, member, index| {
            climb.make_room(0, at(99), member, index, &MEMBER_OF_1, &ns, is_parent)
        };
        assert_eq!(
            room(&mut climb, Some(2), 70),
            None,
            "another stripe's member"
        );
        assert_eq!(room(&mut climb, None, 70), None, "a placeless peer");
        assert_eq!(room(&mut climb, Some(1), 40), None, "an older member");
        assert_eq!(room(&mut climb, Some(1), 70), Some(farthest));
        // With no more idle neighbours than kept (the one never timed among them), nobody
        // makes room.
        let few = at_the_cap(CAP_KEEP_IDLE as u16 - 1);
        let mut climb = Climb::default();
        let room = climb.make_room(0, at(99), Some(1), 70, &MEMBER_OF_1, &few, is_parent);
        assert_eq!(room, None);
    }

    #[test]
    fn a_member_let_in_at_the_cap_that_does_not_subscribe_in_time_is_let_go() {
        let mut ns = at_the_cap(CAP_KEEP_IDLE as u16 + 8);
        let is_parent = |a: &SocketAddr| *a == at(1);
        let mut climb = Climb::default();
        for i in 0..ROOM_PENDING_MAX as u16 {
            let idle = climb.make_room(0, at(100 + i), Some(1), 70, &MEMBER_OF_1, &ns, is_parent);
            let idle = idle.expect("room for a member while few are pending");
            ns.remove(&idle);
            // Far away and idle, yet not let go for the next: it has its grace.
            peer(&mut ns, 100 + i, 70, 1, 5_000);
        }
        // Members claimed by Confirms push out at most this many idle neighbours at once.
        let more = climb.make_room(0, at(110), Some(1), 70, &MEMBER_OF_1, &ns, is_parent);
        assert_eq!(more, None);
        // One of them subscribed; the others are let go once their grace is over.
        ns.get_mut(&at(101)).unwrap().children.insert(1);
        assert!(climb.unsubscribed(ROOM_GRACE_US - 1, &ns).is_empty());
        assert_eq!(
            climb.unsubscribed(ROOM_GRACE_US, &ns),
            vec![at(100), at(102), at(103)]
        );
        let next = climb.make_room(
            ROOM_GRACE_US,
            at(110),
            Some(1),
            70,
            &MEMBER_OF_1,
            &ns,
            is_parent,
        );
        assert!(
            next.is_some(),
            "room again once the pending ones are settled"
        );
        // The one fed is watched: once we no longer feed it, it is let go too.
        assert!(climb.unsubscribed(ROOM_GRACE_US + 1, &ns).is_empty());
        ns.get_mut(&at(101)).unwrap().children = StripeSet::EMPTY;
        assert_eq!(climb.unsubscribed(ROOM_GRACE_US + 2, &ns), vec![at(101)]);
    }
}
