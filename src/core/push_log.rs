//! When each recent chunk was pushed to our children, and whether a child's request crossed
//! the push of what it asked for.

use crate::core::seq_times::SeqTimes;

/// A child's request for a chunk we pushed to it less than its least RTT plus this margin ago
/// crossed the push: the push is on its way, and answering sent the chunk twice. In bl-sim
/// (1,000 × 10 s, seed 1) 73 % of the duplicates a parent sent came after its own first
/// copy: a chunk an ancestor was still repairing came to the parent after later ones of its
/// stripe, the child asked for it 50 ms (now [`LATE_UPSTREAM_WAIT_US`]) after the later one
/// came, and the push arrived while the request was in flight. A crossing request reaches us
/// less than an RTT after the push left; a request for a push that was lost, at least an RTT
/// plus those 50 ms after it (it waited for a later push): half of that gap is the margin. A window of
/// 1.5 × RTT also refused requests for lost pushes, which then waited a retry round (latency
/// p50 over seeds 1–3 rose from 674 to 773 ms). The least RTT, not the smoothed one: on a
/// loaded machine scheduling inflated the smoothed RTT of loopback neighbours, lost pushes
/// were refused as crossed, and a 20-peer swarm whose third was killed skipped a stripe for
/// 270 ms in one run of four (tests/swarm.rs).
///
/// [`LATE_UPSTREAM_WAIT_US`]: crate::core::config::LATE_UPSTREAM_WAIT_US
const CROSSING_MARGIN_US: u64 = 25_000;
const CROSSING_MAX_US: u64 = 500_000;

/// When each recent chunk was pushed to the stripe's children.
#[derive(Debug, Default)]
pub struct PushLog {
    times: SeqTimes,
}

impl PushLog {
    pub fn note(&mut self, seq: u64, now: u64) {
        self.times.note(seq, now);
    }

    pub fn pushed_at(&self, seq: u64) -> Option<u64> {
        self.times.at(seq)
    }

    /// Whether a child's request for `seq`, arriving at `now`, crossed our push of it (see
    /// [`CROSSING_MARGIN_US`]), for a child that subscribed at `child_since` with least RTT
    /// `child_min_rtt_us`. Only a push sent after it subscribed counts: one that subscribed
    /// later asks for what it never got. And only a push that went after a later one of its
    /// stripe (seq + K; we were still repairing it) can cross: a child lacking one pushed in
    /// order asks once the later push shows it lost, at once after a ChunkPrevPushed. The
    /// window outlasts the 18 ms between two pushes of a stripe, and such asks refused as
    /// crossed waited a retry round (bl-sim, 1,000 × 10 s, 1 % loss, seed 1: latency p50
    /// 528.7 ms, against 371.5 answered).
    pub fn crossed(
        &self,
        seq: u64,
        stripes: u8,
        now: u64,
        child_since: u64,
        child_min_rtt_us: u64,
    ) -> bool {
        let window = (child_min_rtt_us + CROSSING_MARGIN_US).min(CROSSING_MAX_US);
        let Some(pushed) = self.pushed_at(seq) else {
            return false;
        };
        let later_pushed_first = seq
            .checked_add(u64::from(stripes))
            .and_then(|later| self.pushed_at(later))
            .is_some_and(|t| t <= pushed);
        pushed >= child_since && now < pushed + window && later_pushed_first
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use crate::core::config::REPAIR_DELAY_US;
    use crate::core::history::History;
    use crate::core::outbox::Outbox;
    use crate::core::repair::Repair;
    use crate::core::stripes::{stripe_of, StripeSet};
    use crate::media::chunk::Chunk;
    use crate::media::identity::StreamKey;
    use crate::proto::wire::Role;

    /// A parent that holds chunk 8 and has budget to answer, and a child's subscriptions
    /// that include 8's stripe (of 4).
    fn parent_holding_8() -> (History, Repair, StripeSet) {
        let key = StreamKey::from_seed([3; 32]);
        let mut history = History::new(64);
        let mut payload = vec![0u8; 188];
        payload[0] = 0x47;
        history.insert(Arc::new(Chunk::sign(&key, 8, 1, 0, payload)));
        let mut repair = Repair::default();
        repair.budget.credit = 100.0;
        let mut feeds = StripeSet::EMPTY;
        feeds.insert(stripe_of(8, 4));
        (history, repair, feeds)
    }

    #[test]
    fn a_childs_request_that_crossed_the_push_is_not_answered_twice() {
        let (history, mut repair, feeds) = parent_holding_8();
        let (child, other) = ("127.0.0.1:7001", "127.0.0.1:7002");
        let (child, other): (SocketAddr, SocketAddr) =
            (child.parse().unwrap(), other.parse().unwrap());
        let rtt = 100_000;
        let pushed = 5_000_000;
        // We were repairing 8 and pushed it after 12, the next of its stripe.
        repair.pushes.note(12, pushed - 18_000);
        repair.pushes.note(8, pushed);
        let mut out = Outbox::default();
        let mut ask = |repair: &mut Repair, at: u64, from: SocketAddr, children: StripeSet| {
            repair.serve(
                at,
                from,
                vec![8],
                false,
                (children, 0),
                rtt,
                &history,
                4,
                Role::Peer,
                &mut out,
            );
            let c = &out.stats.counters;
            (c.repairs_served, c.repairs_crossed)
        };
        // Sent before the push reached the child: it comes within an RTT of the push.
        assert_eq!(ask(&mut repair, pushed + rtt / 2, child, feeds), (0, 1));
        // Anyone else asking is served.
        assert_eq!(
            ask(&mut repair, pushed + rtt / 2, other, StripeSet::EMPTY),
            (1, 1)
        );
        // The push was lost: the child asked only after a later push came, past the window.
        let late = pushed + rtt + REPAIR_DELAY_US;
        assert_eq!(ask(&mut repair, late, child, feeds), (2, 1));
        // A child that subscribed after the push never got it: served at once.
        let mut out = Outbox::default();
        let newcomer = (feeds, pushed + 1);
        repair.serve(
            pushed + rtt / 2,
            child,
            vec![8],
            false,
            newcomer,
            rtt,
            &history,
            4,
            Role::Peer,
            &mut out,
        );
        assert_eq!(out.stats.counters.repairs_served, 1);
    }

    /// A push that went in order crosses no request: a child that lacks it once the next
    /// push of its stripe comes (with ChunkPrevPushed: at once) lost it, and is answered.
    #[test]
    fn a_childs_request_for_a_push_sent_in_order_is_answered_at_once() {
        let (history, mut repair, feeds) = parent_holding_8();
        let child: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let (rtt, pushed) = (100_000, 5_000_000);
        repair.pushes.note(8, pushed);
        repair.pushes.note(12, pushed + 18_000);
        let mut out = Outbox::default();
        // The child saw 12 arrive half an RTT after it left and asked at once: well within
        // the crossing window of the push of 8.
        let asked_at = pushed + 18_000 + rtt;
        let history = &history;
        repair.serve(
            asked_at,
            child,
            vec![8],
            false,
            (feeds, 0),
            rtt,
            history,
            4,
            Role::Peer,
            &mut out,
        );
        assert_eq!(out.stats.counters.repairs_crossed, 0);
        assert_eq!(out.stats.counters.repairs_served, 1);
    }

    /// A peer's answer names in one Reject what it will not send: a seq it lacks, and one
    /// beyond its budget. A request that crossed our push gets none (the push is on its
    /// way), nor a child's for a chunk of its stripe that we lack (we push it once we have
    /// it), and the seed never rejects.
    #[test]
    fn a_peer_rejects_what_it_lacks_or_has_no_budget_for_but_not_a_childs_stripe_and_the_seed_nothing(
    ) {
        use crate::proto::wire::Message;
        let (history, mut repair, feeds) = parent_holding_8();
        let asker: SocketAddr = "127.0.0.1:7003".parse().unwrap();
        let rejects = |out: &mut Outbox| -> Vec<Vec<u64>> {
            std::iter::from_fn(|| out.pop_transmit())
                .filter_map(|t| match t.message {
                    Message::Reject { seqs } => Some(seqs),
                    _ => None,
                })
                .collect()
        };
        let mut out = Outbox::default();
        let ask = |repair: &mut Repair, out: &mut Outbox, seqs, fed: StripeSet, role| {
            let fed = (fed, 0);
            repair.serve(
                1_000, asker, seqs, false, fed, 50_000, &history, 4, role, out,
            );
        };
        let none = StripeSet::EMPTY;
        ask(&mut repair, &mut out, vec![7, 8, 9], none, Role::Peer);
        assert_eq!(out.stats.counters.repairs_served, 1);
        assert_eq!(rejects(&mut out), vec![vec![7, 9]], "the two it lacks");
        repair.budget.credit = 0.0;
        ask(&mut repair, &mut out, vec![8], none, Role::Peer);
        assert_eq!(rejects(&mut out), vec![vec![8]], "no budget left");
        ask(&mut repair, &mut out, vec![7, 8], none, Role::Seed);
        assert_eq!(
            rejects(&mut out),
            Vec::<Vec<u64>>::new(),
            "the seed is silent"
        );
        // The child's request crossed the push: no Reject, the push is coming.
        repair.budget.credit = 100.0;
        repair.pushes.note(12, 900);
        repair.pushes.note(8, 950);
        ask(&mut repair, &mut out, vec![8], feeds, Role::Peer);
        assert_eq!(out.stats.counters.repairs_crossed, 1);
        assert_eq!(rejects(&mut out), Vec::<Vec<u64>>::new());
        // A child's ask for a chunk of its stripe that we lack: no Reject, we push it down
        // once our own repair brings it.
        ask(&mut repair, &mut out, vec![12, 13], feeds, Role::Peer);
        assert_eq!(
            rejects(&mut out),
            vec![vec![13]],
            "13 is of a stripe it does not feed"
        );
    }
}
