//! A joiner's place in the stripe trees: its index (join order, counted in the stream's own
//! clock) and its member stripe, the one stripe whose tree it helps carry.

use crate::core::config::INDICES_PER_CHUNK;
use crate::core::neighbours::Neighbours;
use crate::core::stripes::{stripe_of, MAX_STRIPES};
use crate::core::units::Seq;
use crate::proto::wire::Role;

/// Where the indices of peers joining when `newest` is the stream's newest chunk begin.
pub fn join_index_base(newest: Option<Seq>) -> u64 {
    newest
        .map_or(0, |seq| seq.0.saturating_add(1))
        .saturating_mul(INDICES_PER_CHUNK)
}

/// The member stripe of a peer that drew its index `own` itself (it joined through a
/// peer): its index's stripe, unless peers we already know are members of it and another
/// stripe has fewer, then the first of the fewest after it. Of three viewers started
/// together through a tracker (tests/discovery.rs), one placed by a Welcome from another
/// shared that one's stripe by chance, two stripes had no member, and each viewer needed
/// both from the seed, beyond its budget of six stripe copies: a viewer lived on repairs
/// in 11 runs of 30, and every such viewer probed had drawn its own index. A joiner in a
/// large swarm knows nobody yet when it is placed, and takes its index's stripe.
pub fn member_stripe(own: u64, stripes: u8, neighbours: &Neighbours) -> u8 {
    let mut members = [0usize; MAX_STRIPES as usize];
    for n in neighbours.values().filter(|n| n.role == Role::Peer) {
        if let Some(count) = n.member.and_then(|m| members.get_mut(usize::from(m))) {
            *count += 1;
        }
    }
    let stripes = stripes.clamp(1, MAX_STRIPES);
    let first = stripe_of(own, stripes);
    (0..stripes)
        .map(|k| (first + k) % stripes)
        .min_by_key(|s| members.get(usize::from(*s)).copied().unwrap_or(0))
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::neighbours::Neighbour;
    use std::net::SocketAddr;

    fn with_members(members: &[u8]) -> Neighbours {
        let mut ns = Neighbours::default();
        for (i, m) in members.iter().enumerate() {
            let addr = SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16));
            ns.insert(addr, Neighbour::new(Role::Peer, 10 + i as u64, Some(*m), 0));
        }
        ns.insert(
            SocketAddr::from(([127, 0, 0, 1], 8999)),
            Neighbour::new(Role::Seed, 0, None, 0),
        );
        ns
    }

    #[test]
    fn a_joiner_takes_its_index_stripe_unless_known_peers_hold_it_and_another_is_emptier() {
        let own = 4 * 1000 + 1; // stripe 1 of 4
                                // Knowing nobody (a joiner in a large swarm): its index's stripe.
        assert_eq!(member_stripe(own, 4, &Neighbours::default()), 1);
        // Two viewers it knows are members of stripes 1 and 2: the first empty one after 1.
        assert_eq!(member_stripe(own, 4, &with_members(&[1, 2])), 3);
        // Every stripe has one member: its index's stripe again.
        assert_eq!(member_stripe(own, 4, &with_members(&[0, 1, 2, 3])), 1);
        // Wrapping round: stripes 1, 2 and 3 taken, 0 is the fewest.
        assert_eq!(member_stripe(own, 4, &with_members(&[1, 2, 3])), 0);
    }
}
