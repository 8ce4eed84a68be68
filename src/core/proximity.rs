//! Nearer neighbours: a peer with all the neighbours it wants still greets one stranger now
//! and then, and keeps it in place of its farthest neighbour that feeds nothing and is fed
//! nothing, if the stranger is nearer by [`PROBE_GAIN_US`] of round trip.
//!
//! Why: parents are chosen among neighbours, and neighbours came at random (the tracker,
//! peer exchange), so a tree's hops were nearly as long as a random pair's (bl-sim, 3,000
//! peers: 53.8 ms one way from parent to child against 60.5 ms between any two
//! neighbours), and every hop adds its delay to every chunk below it.
//!
//! What bounds it:
//! - one probe at a time, one every [`PROBE_EVERY_US`] to [`PROBE_EVERY_MAX_US`];
//! - parents, children and the seed are never let go for nearness (the tree does not move
//!   under a probe), nor the last [`KEEP_ELDERS`] older members of our own stripe (the only
//!   peers that may feed us there), nor the last [`KEEP_FAR`] neighbours not kept for
//!   nearness: the swarm stays one random graph rather than islands of neighbours, and a
//!   hostile cluster near a peer cannot take all of its neighbour slots (a round trip can be
//!   made longer, never shorter, so nearness is hard to fake from afar).

use std::net::SocketAddr;

use crate::core::neighbours::Neighbours;
use crate::core::rng::Rng;
use crate::core::tree::Place;
use crate::proto::wire::{PeerInfo, Role};

/// How often a peer with its target of neighbours greets one stranger to compare, at first
/// and after a stranger was kept; each stranger let go doubles the wait, up to
/// [`PROBE_EVERY_MAX_US`]. Without backing off, every 2 s instead of every 1 s (bl-sim,
/// 3,000 peers × 60 s, seed 1): latency p50 452 against 435 ms, 2.5 % of stripe slots
/// without a parent against 1.9 %.
pub const PROBE_EVERY_US: u64 = 1_000_000;
/// The longest wait between probes: a swarm whose neighbours are as near as its strangers
/// (a LAN, loopback) pays a Hello's round trip only this often. With 16 s (bl-sim, 3,000
/// peers × 60 s, seeds 1-2, in a first form that counted each wait from the probe's Hello),
/// latency p50 was 452 / 435 ms against 435 / 435 ms with 4 s, and the overhead no lower
/// (13.62 / 13.64 % against 13.59 / 13.54 %).
pub const PROBE_EVERY_MAX_US: u64 = 4_000_000;
/// How long a probe's Welcome is waited for: past membership's four Hellos half a second
/// apart (a Welcome to a retried Hello times no round trip, and its probe is let go).
pub const PROBE_ANSWER_US: u64 = 3_000_000;
/// How much nearer (round trip) a stranger must be than the neighbour it replaces.
pub const PROBE_GAIN_US: u64 = 20_000;
/// Neighbours not kept for nearness that are never let go for it.
pub const KEEP_FAR: usize = 6;
/// Older members of our own stripe never let go for nearness while we know no more than
/// this many: in our member stripe only they may feed us, and the oldest members know few.
/// A root the seed lets go as the swarm settles must find a place below an older member
/// (bl-sim, 50 peers × 8 s, the stream at 2 s, seeds 2 and 25: a root of stripe 0 had let
/// its one elder, the stripe's other root, go for a nearer stranger; let go by the seed, it
/// found no place, and its subtree lived on repairs once the seed's handover ended: 624 and
/// 297 chunks asked for, 99 and 77 with this).
pub const KEEP_ELDERS: usize = 2;

#[derive(Debug, Default, Clone)]
pub struct Proximity {
    next_probe: u64,
    /// The wait until the next probe: [`PROBE_EVERY_US`], doubled by each one let go.
    every: u64,
    /// The stranger greeted to compare, and when, if its Welcome has not come (given up
    /// after [`PROBE_ANSWER_US`]).
    probing: Option<(SocketAddr, u64)>,
    /// Whether the next Peers answer may name a stranger to probe.
    wants_candidate: bool,
}

/// What to do with a probe that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the probe, and let this neighbour go.
    Replace(SocketAddr),
    /// Not nearer than any neighbour we could let go: let the probe go.
    DropProbe,
}

impl Proximity {
    /// Every tick: whether to ask a neighbour for peers to find a stranger to probe (only
    /// with the target reached: below it, peer exchange greets every stranger anyway), and
    /// whom (the nearest neighbour half the time: a near neighbour's neighbours tend to be
    /// near; otherwise one at random).
    pub fn ask_whom(
        &mut self,
        now: u64,
        target: usize,
        neighbours: &Neighbours,
        rng: &mut Rng,
    ) -> Option<SocketAddr> {
        if self
            .probing
            .is_some_and(|(_, at)| now >= at + PROBE_ANSWER_US)
        {
            self.probing = None;
        }
        if now < self.next_probe || self.probing.is_some() || neighbours.len() < target {
            return None;
        }
        self.every = self.every.clamp(PROBE_EVERY_US, PROBE_EVERY_MAX_US);
        // Until the probe is judged (which sets the wait from then), or given up.
        self.next_probe = now + self.every;
        let peers: Vec<(u64, SocketAddr)> = neighbours
            .iter()
            .filter(|(_, n)| n.role == Role::Peer)
            .map(|(a, n)| (n.rtt_us.unwrap_or(u64::MAX), *a))
            .collect();
        let pick = match rng.below(2) {
            0 => peers.iter().min().map(|(_, a)| *a),
            _ => peers.get(rng.below(peers.len())).map(|(_, a)| *a),
        };
        self.wants_candidate = pick.is_some();
        pick
    }

    /// A Peers answer came: the stranger to greet as the probe, if one is wanted (a listed
    /// peer that is a `stranger`, not on our LAN: those are greeted at their LAN address by
    /// membership, nearness aside).
    pub fn candidate(
        &mut self,
        now: u64,
        peers: &[PeerInfo],
        stranger: impl Fn(&SocketAddr) -> bool,
        rng: &mut Rng,
    ) -> Option<SocketAddr> {
        if !self.wants_candidate || self.probing.is_some() {
            return None;
        }
        let strangers: Vec<SocketAddr> = peers
            .iter()
            .filter(|p| p.lan.is_none())
            .map(|p| p.addr)
            .filter(|a| stranger(a))
            .collect();
        let pick = strangers.get(rng.below(strangers.len())).copied()?;
        self.wants_candidate = false;
        self.probing = Some((pick, now));
        Some(pick)
    }

    /// Whether `addr` is the probe whose Welcome we wait for.
    pub fn is_probe(&self, addr: &SocketAddr) -> bool {
        self.probing.is_some_and(|(a, _)| a == *addr)
    }

    /// The probe `probe` welcomed us (its round trip noted in `neighbours`): keep it in
    /// place of the farthest neighbour that may go (`busy`: parents and children stay), or
    /// let it go. A kept probe is marked [`Neighbour::near`](crate::core::neighbours::Neighbour::near).
    pub fn judge(
        &mut self,
        now: u64,
        probe: SocketAddr,
        neighbours: &mut Neighbours,
        busy: impl Fn(&SocketAddr) -> bool,
    ) -> Verdict {
        self.probing = None;
        let verdict = compare(probe, neighbours, busy);
        if let (Verdict::Replace(_), Some(n)) = (verdict, neighbours.get_mut(&probe)) {
            n.near = true;
        }
        self.every = match verdict {
            Verdict::Replace(_) => PROBE_EVERY_US,
            Verdict::DropProbe => self.every.saturating_mul(2).min(PROBE_EVERY_MAX_US),
        };
        self.next_probe = now + self.every;
        verdict
    }

    /// A neighbour is gone: if it was the probe, no Welcome is awaited any more.
    pub fn forget(&mut self, addr: &SocketAddr) {
        if self.is_probe(addr) {
            self.probing = None;
        }
    }
}

/// The older members of our member stripe (`place`) among our neighbours, if we know no
/// more than [`KEEP_ELDERS`]: none may be let go for nearness.
pub fn last_elders(place: &Place, neighbours: &Neighbours) -> Vec<SocketAddr> {
    let elders: Vec<SocketAddr> = neighbours
        .iter()
        .filter(|(_, n)| place.is_elder(n))
        .map(|(a, _)| *a)
        .collect();
    match elders.len() <= KEEP_ELDERS {
        true => elders,
        false => Vec::new(),
    }
}

/// The farthest neighbour that may give its place to `probe`, if `probe` is nearer by
/// [`PROBE_GAIN_US`].
fn compare(
    probe: SocketAddr,
    neighbours: &Neighbours,
    busy: impl Fn(&SocketAddr) -> bool,
) -> Verdict {
    let Some(rtt) = neighbours.get(&probe).and_then(|n| n.rtt_us) else {
        return Verdict::DropProbe;
    };
    let far_kept = neighbours
        .iter()
        .filter(|(a, n)| **a != probe && !n.near)
        .count();
    let farthest = neighbours
        .iter()
        .filter(|(a, n)| {
            **a != probe
                && n.role == Role::Peer
                && n.children.is_empty()
                && !busy(a)
                && (n.near || far_kept > KEEP_FAR)
        })
        .filter_map(|(a, n)| Some((n.rtt_us?, *a)))
        .max();
    match farthest {
        Some((far, addr)) if far > rtt + PROBE_GAIN_US => Verdict::Replace(addr),
        _ => Verdict::DropProbe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::neighbours::Neighbour;

    fn at(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 9000 + i))
    }

    /// Twelve peer neighbours, neighbour `i` at `i` × 10 ms of round trip, and the seed.
    fn twelve() -> Neighbours {
        let mut ns = Neighbours::default();
        ns.insert(at(0), Neighbour::new(Role::Seed, 0, None, 0));
        ns.note_rtt(at(0), 500_000);
        for i in 1..=12 {
            ns.insert(at(i), Neighbour::new(Role::Peer, u64::from(i), Some(0), 0));
            ns.note_rtt(at(i), u64::from(i) * 10_000);
        }
        ns
    }

    /// Greets the stranger at `at(100 + n)`, as a Peers answer would name it, and notes
    /// its round trip as its Welcome does.
    fn probe(p: &mut Proximity, ns: &mut Neighbours, n: u16, rtt: u64, now: u64) -> SocketAddr {
        let mut rng = Rng::new(1);
        assert!(
            p.ask_whom(now, 12, ns, &mut rng).is_some(),
            "no probe due at {now}"
        );
        let stranger = PeerInfo {
            addr: at(100 + n),
            index: 50,
            member: 1,
            lan: None,
        };
        let greeted = p.candidate(now, &[stranger], |a| !ns.contains_key(a), &mut rng);
        assert_eq!(greeted, Some(stranger.addr));
        ns.insert(stranger.addr, Neighbour::new(Role::Peer, 50, Some(1), now));
        ns.note_rtt(stranger.addr, rtt);
        stranger.addr
    }

    #[test]
    fn a_nearer_stranger_takes_the_place_of_the_farthest_idle_neighbour() {
        let (mut p, mut ns) = (Proximity::default(), twelve());
        // The farthest (120 ms) feeds us a stripe, the next (110 ms) is fed one by us.
        ns.get_mut(&at(11)).unwrap().children.insert(2);
        let parent = |a: &SocketAddr| *a == at(12);
        let near = probe(&mut p, &mut ns, 1, 15_000, 0);
        assert_eq!(p.judge(0, near, &mut ns, parent), Verdict::Replace(at(10)));
        // The seed (500 ms) is never let go for nearness either.
        assert!(!p.is_probe(&near));
    }

    /// An old member of stripe 0 knows few older members of its stripe, the only peers that
    /// may feed it there: the last [`KEEP_ELDERS`] stay, however far.
    #[test]
    fn the_last_older_members_of_our_stripe_are_not_let_go_for_a_nearer_stranger() {
        let place = Place {
            role: Role::Peer,
            index: 50,
            member: Some(0),
            stripes: 4,
        };
        let judge = |elders: &[u16]| {
            let (mut p, mut ns) = (Proximity::default(), twelve());
            for i in 1..=12 {
                let n = ns.get_mut(&at(i)).unwrap();
                n.index = match elders.contains(&i) {
                    true => u64::from(i),
                    false => 100 + u64::from(i),
                };
            }
            let near = probe(&mut p, &mut ns, 1, 15_000, 0);
            let kept = last_elders(&place, &ns);
            p.judge(0, near, &mut ns, |a| kept.contains(a))
        };
        // The farthest (120 ms) is our one elder: the next farthest goes.
        assert_eq!(judge(&[12]), Verdict::Replace(at(11)));
        assert_eq!(judge(&[1, 12]), Verdict::Replace(at(11)));
        // With a third elder the farthest may go: two stay.
        assert_eq!(judge(&[1, 2, 12]), Verdict::Replace(at(12)));
    }

    #[test]
    fn a_stranger_not_nearer_by_the_gain_is_let_go_and_probes_grow_rarer() {
        let (mut p, mut ns) = (Proximity::default(), twelve());
        let mut now = 0;
        let mut waits = Vec::new();
        for n in 0..5 {
            // 105 ms against the farthest idle neighbour's 120 ms: 15 ms nearer, under the gain.
            let far = probe(&mut p, &mut ns, n, 105_000, now);
            assert_eq!(p.judge(now, far, &mut ns, |_| false), Verdict::DropProbe);
            ns.remove(&far);
            let mut rng = Rng::new(1);
            let next = (now..now + 10_000_000)
                .step_by(100_000)
                .find(|t| {
                    let mut q = p.clone();
                    q.ask_whom(*t, 12, &ns, &mut rng).is_some()
                })
                .expect("a probe within 10 s");
            waits.push(next - now);
            now = next;
        }
        assert_eq!(
            waits,
            [2_000_000, 4_000_000, 4_000_000, 4_000_000, 4_000_000],
            "each stranger let go doubles the wait, up to the longest"
        );
        // One kept brings the wait back to the shortest.
        let near = probe(&mut p, &mut ns, 9, 5_000, now);
        assert_eq!(
            p.judge(now, near, &mut ns, |_| false),
            Verdict::Replace(at(12))
        );
        let mut rng = Rng::new(1);
        assert!(p
            .ask_whom(now + PROBE_EVERY_US - 1, 12, &ns, &mut rng)
            .is_none());
        assert!(p
            .ask_whom(now + PROBE_EVERY_US, 12, &ns, &mut rng)
            .is_some());
    }

    #[test]
    fn the_last_far_neighbours_stay_however_near_the_strangers() {
        let (mut p, mut ns) = (Proximity::default(), twelve());
        let mut now = 0;
        let mut kept = 0;
        for n in 0..12 {
            let near = probe(&mut p, &mut ns, n, 1_000, now);
            match p.judge(now, near, &mut ns, |_| false) {
                Verdict::Replace(far) => {
                    ns.remove(&far);
                    kept += 1;
                }
                Verdict::DropProbe => {
                    ns.remove(&near);
                }
            }
            now += PROBE_EVERY_MAX_US;
        }
        // The seed and KEEP_FAR - 1 peers make the KEEP_FAR neighbours not kept for nearness.
        let far_left = ns.values().filter(|n| !n.near).count();
        assert_eq!(far_left, KEEP_FAR);
        assert_eq!(kept, 12 - (KEEP_FAR - 1));
        assert_eq!(ns.len(), 13, "a probe only ever takes a place");
    }

    #[test]
    fn no_probe_below_the_target_nor_while_one_is_out() {
        let (mut p, mut ns) = (Proximity::default(), twelve());
        let mut rng = Rng::new(1);
        assert!(
            p.ask_whom(0, 14, &ns, &mut rng).is_none(),
            "below the target"
        );
        let out = probe(&mut p, &mut ns, 1, 1_000, 0);
        ns.remove(&out);
        let early = PROBE_ANSWER_US - 1;
        assert!(p.ask_whom(early, 12, &ns, &mut rng).is_none(), "one is out");
        // An unanswered probe is given up.
        assert!(p.ask_whom(PROBE_ANSWER_US, 12, &ns, &mut rng).is_some());
    }
}
