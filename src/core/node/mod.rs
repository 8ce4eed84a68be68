//! The node: the facade of the sans-IO swarm core, one state machine for the seed and peer
//! roles. It owns the sub-machines, dispatches every input to them, and applies what they
//! return in a fixed order; none of them holds another.
//!
//! It never reads a clock, a socket or the OS RNG. Call contract (docs/ARCHITECTURE.md):
//! feed it with [`Node::handle_datagram`], [`Node::handle_chunk`] (seed: chunks from stdin),
//! [`Node::handle_input_end`] and [`Node::handle_timeout`]; after each call drain
//! [`Node::poll_output`] until it says [`Output::Timeout`], and call `handle_timeout` then.
//! Time is µs since the UNIX epoch (wall clock, so latency = play time − capture time);
//! randomness comes from the seed in [`Config::rng_seed`].
//!
//! Dissemination: the stream is cut into K stripes by `seq mod K`. Every peer has an index
//! (join order, in the stream's clock: from the seed, or self-drawn when it joined through a
//! peer) and a member stripe. For every stripe a node has one parent that pushes it every
//! chunk of that stripe the moment it verifies ([`StripeTree`]); every node announces what it
//! holds to its neighbours (Have) and pulls what is still missing ([`Repair`]). This is
//! SplitStream's stripes with GridMedia/Plumtree push–pull repair.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::core::climb::Climb;
use crate::core::config::{DEFAULT_RTT_US, INDICES_PER_CHUNK, QUIET_WARN_US, TICK_US};
use crate::core::guard::{Guard, Source};
use crate::core::history::History;
use crate::core::membership::{ConfirmOutcome, HelloAnswer, Membership};
use crate::core::neighbours::{HaveSummary, Neighbours};
use crate::core::outbox::Outbox;
use crate::core::place::{join_index_base, member_stripe};
use crate::core::playout::{Lifecycle, Playout};
use crate::core::proximity::Proximity;
use crate::core::reachability::{Reach, Reachability};
use crate::core::repair::{self, Known, Repair};
use crate::core::rng::Rng;
use crate::core::root_release::RootRelease;
use crate::core::stats::{LatencyReport, NodeStats, Report};
use crate::core::stripes::StripeSet;
use crate::core::timers::{Timer, Timers};
use crate::core::tree::{Place, StripeTree};
use crate::core::units::{Micros, Seq};
use crate::media::chunk::{Chunk, MAX_DATAGRAM};
use crate::media::identity::StreamId;
use crate::proto::wire::{self, Message, Role};

pub use crate::core::config::{Config, Tuning};
pub use crate::core::outbox::{Event, Finish, Output, Transmit};

/// Sizes of a node's buffers (see [`Node::buffered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffered {
    pub history: usize,
    pub missing: usize,
    /// Seqs between the oldest and the newest missing one (the missing set's ring).
    pub missing_span: usize,
    pub playout: usize,
    pub neighbours: usize,
    /// Transmits and events not yet drained by the driver.
    pub queued: usize,
}

pub struct Node {
    cfg: Config,
    rng: Rng,
    started_at: u64,
    local_addr: Option<SocketAddr>,
    /// Our address as others see it, and the NAT that implies.
    reach: Reach,
    place: Place,
    neighbours: Neighbours,
    membership: Membership,
    proximity: Proximity,
    climb: Climb,
    tree: StripeTree,
    repair: Repair,
    playout: Playout,
    guard: Guard,
    /// Seed: when to let root slots beyond its budget go.
    root_release: RootRelease,
    /// Verified chunks kept for repairs and joiners.
    history: History,
    highest: Option<Seq>,
    latest_keyframe: Option<Seq>,
    timers: Timers,
    ticks: u64,
    out: Outbox,
    /// Wall clock − `now`, µs: `now` is the driver's monotonic clock, capture times wall clock.
    wall_offset: i64,
}

impl Node {
    pub fn new(cfg: Config, now: u64) -> Self {
        let mut rng = Rng::new(cfg.rng_seed);
        let membership = Membership::new(
            cfg.role,
            cfg.stream,
            cfg.bootstrap.clone(),
            now,
            &cfg.secret,
            &mut rng,
        );
        let stripes = cfg.tuning.stripes.max(1);
        let mut timers = Timers::default();
        timers.set(Timer::Tick, Micros(now));
        let mut node = Node {
            rng,
            started_at: now,
            local_addr: None,
            reach: Reach::default(),
            place: Place {
                role: cfg.role,
                index: 0,
                member: None,
                stripes,
            },
            neighbours: Neighbours::default(),
            membership,
            proximity: Proximity::default(),
            climb: Climb::default(),
            tree: StripeTree::new(stripes, now),
            repair: Repair::default(),
            playout: Playout::new(
                cfg.role == Role::Peer,
                cfg.tuning.history,
                cfg.tuning.latency_us,
                now,
            ),
            guard: Guard::new(cfg.stream, cfg.verified.clone()),
            root_release: RootRelease::default(),
            history: History::new(cfg.tuning.history),
            highest: None,
            latest_keyframe: None,
            timers,
            ticks: 0,
            out: Outbox::default(),
            wall_offset: 0,
            cfg,
        };
        if !node.guard.has_key() {
            node.out.warn("stream id is not a valid key".into());
        }
        for addr in node.membership.bootstrap().to_vec() {
            node.membership
                .send_hello(now, addr, &node.place, &mut node.rng, &mut node.out);
        }
        node
    }

    // ---- what the driver reads -----------------------------------------------------------

    /// The wall clock reads `wall_us` when the driver's clock reads `now`: latency figures
    /// use it. Without a call, the two clocks are taken to be one (the simulator's case).
    pub fn set_wall_clock(&mut self, now: u64, wall_us: u64) {
        self.wall_offset = wall_us as i64 - now as i64;
    }

    /// The wall clock at `now`, for latency against capture times.
    fn wall(&self, now: u64) -> u64 {
        now.saturating_add_signed(self.wall_offset)
    }

    /// The address the driver bound, for reports.
    pub fn set_local_addr(&mut self, addr: SocketAddr) {
        self.local_addr = Some(addr);
        self.reach.set_local(addr);
        if !addr.ip().is_unspecified() {
            self.membership.set_lan(addr);
        } else if let Some(ip) = self.reach.route_ip() {
            self.membership.set_lan(SocketAddr::new(ip, addr.port()));
        }
    }

    /// The IP the driver's traffic leaves from, when the socket is bound to all interfaces:
    /// a Welcome that saw it means no NAT.
    pub fn set_route_ip(&mut self, ip: std::net::IpAddr) {
        self.reach.set_route_ip(ip);
        if let Some(local) = self.local_addr {
            self.membership.set_lan(SocketAddr::new(ip, local.port()));
        }
    }

    /// The IP our traffic leaves from, once the driver told us.
    pub fn route_ip(&self) -> Option<std::net::IpAddr> {
        self.reach.route_ip()
    }

    pub fn role(&self) -> Role {
        self.cfg.role
    }

    /// How reachable we are, from what others saw.
    pub fn reachability(&self) -> Reachability {
        self.reach.classify()
    }

    pub fn stream(&self) -> StreamId {
        self.cfg.stream
    }

    pub fn stats(&self) -> &NodeStats {
        &self.out.stats
    }

    /// Subscriptions this node feeds (a seed's root slots in use, extra roots too).
    pub fn children_fed(&self) -> u8 {
        self.neighbours.children_count()
    }

    pub fn neighbour_count(&self) -> usize {
        self.neighbours.len()
    }

    /// Neighbours, counted only while they bring the stream (a verified chunk within
    /// [`QUIET_WARN_US`]): what discovery goes by. Two viewers waiting for a broadcast found
    /// each other through the tracker, stopped asking it, and never learnt of the seed when
    /// it came; with none of its neighbours bringing anything a peer is as alone as with none.
    pub fn neighbours_bringing_the_stream(&self, now: u64) -> usize {
        match now.saturating_sub(self.playout.last_data) < QUIET_WARN_US {
            true => self.neighbours.len(),
            false => 0,
        }
    }

    pub fn neighbour_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.neighbours.keys().copied()
    }

    /// The seed of the node's random choices (helpers derive their own ids from it).
    pub fn rng_seed(&self) -> u64 {
        self.cfg.rng_seed
    }

    pub fn index(&self) -> u64 {
        self.place.index
    }

    pub fn member(&self) -> Option<u8> {
        self.place.member
    }

    /// Each stripe's parent.
    pub fn parents(&self) -> Vec<Option<SocketAddr>> {
        self.tree.parents()
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.playout.lifecycle, Lifecycle::Finished { .. })
    }

    /// How much the node holds now, for the simulator's bounded-buffer invariant.
    pub fn buffered(&self) -> Buffered {
        Buffered {
            history: self.history.len(),
            missing: self.repair.missing.len(),
            missing_span: self.repair.missing.span(),
            playout: self.playout.pending(),
            neighbours: self.neighbours.len(),
            queued: self.out.queued(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The driver counts chunks it could not write (stuck player) here.
    pub fn count_output_drop(&mut self) {
        self.out.stats.counters.chunks_dropped_output += 1;
    }

    /// Hops from the seed in this peer's member stripe (255: not attached).
    pub fn tree_depth(&self) -> u8 {
        self.tree.depth(&self.place, &self.neighbours)
    }

    pub fn report(&self, now: u64) -> Report {
        let stats = &self.out.stats;
        Report {
            role: match self.cfg.role {
                Role::Seed => "seed".into(),
                Role::Peer => "peer".into(),
            },
            stream_id: self.cfg.stream.to_string(),
            addr: self.local_addr.map(|a| a.to_string()).unwrap_or_default(),
            uptime_s: now.saturating_sub(self.started_at) as f64 / 1e6,
            neighbours: self.neighbours.len(),
            bytes_sent: stats.bytes_sent(),
            bytes_received: stats.bytes_received(),
            chunk_bytes_sent: stats.sent.get("chunk").bytes,
            counters: stats.counters,
            stream_bytes: stats.stream_bytes,
            latency_ms: LatencyReport::from_histogram(&stats.latency_us),
            ingest_latency_ms: LatencyReport::from_histogram(&stats.ingest_latency_us),
            sent_by_kind: stats.sent.iter().map(|(k, v)| (k.to_string(), v)).collect(),
            startup_ms: self
                .playout
                .first_play_at
                .map(|t| t.saturating_sub(self.started_at) as f64 / 1000.0),
            latency_histogram_ms: Vec::new(),
            wake_lag_max_ms: None,
            stalls: None,
            reachability: Some(self.reach.classify()),
            public_addr: self.reach.public_addr().map(|a| a.to_string()),
        }
    }

    /// What to do next: a datagram to send, an event to act on, or (nothing queued) the time
    /// to call [`Node::handle_timeout`]. Datagrams come before events, in the order queued.
    pub fn poll_output(&mut self) -> Output {
        if let Some(t) = self.out.pop_transmit() {
            return Output::Transmit(t);
        }
        if let Some(e) = self.out.pop_event() {
            return Output::Event(e);
        }
        Output::Timeout(self.poll_timeout())
    }

    /// The next time [`Node::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> u64 {
        let at = |timer| self.timers.get(timer).map(|t: Micros| t.0);
        let mut t = at(Timer::Tick).unwrap_or(u64::MAX);
        if !self.repair.missing.is_empty() {
            t = t.min(at(Timer::Repair).unwrap_or(u64::MAX));
        }
        let others = [
            self.playout.poll_timeout(),
            at(Timer::EndDeadline),
            at(Timer::Linger),
        ];
        for d in others.into_iter().flatten() {
            t = t.min(d);
        }
        t
    }

    // ---- inputs --------------------------------------------------------------------------

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: u64, from: SocketAddr, bytes: &[u8]) {
        if let Some(message) = self.decode_datagram(from, bytes) {
            self.handle_message(now, from, message, bytes.len());
        }
    }

    /// A decoded datagram of `len` bytes arrived from `from`. The simulator calls this
    /// directly with what another core sent, skipping the encoding round trip (it checks
    /// what it routes with [`wire::validate`], as [`wire::decode`] does).
    pub fn handle_message(&mut self, now: u64, from: SocketAddr, message: Message, len: usize) {
        if self.guard.is_banned(&from) {
            self.out.count_dropped();
            return;
        }
        let known = self.neighbours.contains_key(&from);
        if !self.membership.admits(&message, from, known) {
            self.out.count_dropped();
            return;
        }
        self.out.stats.count_received(message.kind_index(), len);
        if let Some(n) = self.neighbours.get_mut(&from) {
            n.last_heard = now;
            // Peers (and Welcomes) also come to strangers: they prove nothing.
            if !matches!(message, Message::Peers { .. } | Message::Welcome(_)) {
                n.unconfirmed = None;
            }
        }
        match message {
            Message::Hello(hello) => self.on_hello(from, &hello, len),
            Message::Welcome(welcome) => self.on_welcome(now, from, &welcome),
            Message::Confirm {
                token,
                index,
                member,
                lan,
            } => self.on_confirm(now, from, token, index, member, lan),
            Message::GetPeers { .. } => self.membership.answer_get_peers(
                from,
                self.above_for(from),
                &self.neighbours,
                &mut self.rng,
                &mut self.out,
            ),
            Message::Peers { peers } => self.on_peers(now, from, &peers),
            Message::Introduce { peer } => self.on_introduce(now, from, peer),
            Message::Introduced { peer } => self.on_introduced(now, from, peer),
            Message::Subscribe { stripe, hold_after } => {
                self.on_subscribe(now, from, stripe, hold_after)
            }
            Message::SubscribeReply { stripe, accepted } => {
                self.on_subscribe_reply(now, from, stripe, accepted)
            }
            Message::Unsubscribe { stripe } => self.on_unsubscribe(now, from, stripe),
            Message::Chunk(chunk) => self.on_chunk(now, Source::Neighbour(from), chunk, false),
            Message::ChunkPrevPushed(c) => self.on_chunk(now, Source::Neighbour(from), c, true),
            Message::Have {
                first,
                highest,
                recent,
                children,
                spare,
                depth,
            } => {
                let have = HaveSummary {
                    first,
                    highest,
                    recent,
                };
                self.on_have(now, from, have, children, spare, depth);
            }
            Message::Request { seqs } => {
                let (children, rtt, since, from_seed) =
                    self.neighbours
                        .get(&from)
                        .map_or((StripeSet::EMPTY, None, 0, false), |n| {
                            (
                                n.children,
                                n.rtt_min_us,
                                n.subscribed_at,
                                n.role == Role::Seed,
                            )
                        });
                self.repair.serve(
                    now,
                    from,
                    seqs,
                    from_seed,
                    (children, since),
                    rtt.unwrap_or(DEFAULT_RTT_US),
                    &self.history,
                    self.place.stripes,
                    self.cfg.role,
                    &mut self.out,
                );
            }
            Message::Reject { seqs } => {
                self.repair
                    .on_reject(Micros(now), from, &seqs, &mut self.timers);
            }
            Message::Refuse { nonce, stream } => {
                let wrong_link = self
                    .membership
                    .on_refuse(from, nonce, stream, &mut self.out);
                if wrong_link && self.neighbours.is_empty() && !self.is_finished() {
                    let why = format!(
                        "every bootstrap node serves another stream than {}",
                        self.cfg.stream
                    );
                    self.finish(Finish::GaveUp(why));
                }
            }
            Message::Goodbye => self.drop_neighbour(from),
            Message::StatsRequest { nonce, .. } => self.answer_stats(now, from, nonce, len),
            Message::StatsReply { .. } => {}
        }
    }

    /// Seed: a chunk read from stdin.
    pub fn handle_chunk(&mut self, now: u64, chunk: impl Into<Arc<Chunk>>) {
        self.on_chunk(now, Source::Input, chunk.into(), false);
    }

    /// Seed: stdin ended. After the stream's signed end record (bl-chunk writes one) the seed
    /// is already lingering to serve the last repairs. Without one it cannot tell the swarm
    /// (only the stream key can end a stream): it says so, lingers as long, and finishes;
    /// its peers give up after their --give-up.
    pub fn handle_input_end(&mut self, now: u64) {
        if self.playout.lifecycle != Lifecycle::Live {
            return;
        }
        let linger = match self.highest {
            Some(_) => {
                self.out.warn(
                    "stdin ended without the stream's signed end record: viewers will wait \
                     their --give-up time before they stop"
                        .into(),
                );
                self.cfg.tuning.latency_us + self.cfg.tuning.linger_us
            }
            None => 0,
        };
        self.playout.lifecycle = Lifecycle::Lingering { last: None };
        self.timers.set(Timer::Linger, Micros(now) + linger);
    }

    /// Leave politely: Goodbye to every neighbour.
    pub fn leave(&mut self) {
        for addr in self.neighbours.keys() {
            self.out.send(*addr, &Message::Goodbye);
        }
        self.neighbours.clear();
        self.tree.children_changed();
    }

    pub fn handle_timeout(&mut self, now: u64) {
        self.playout.handle_timeout(now);
        self.drain_playout(now);
        if self.timers.expired(Timer::Tick, Micros(now)) {
            self.timers.set(Timer::Tick, Micros(now) + TICK_US);
            self.tick(now);
        }
        let tree = &self.tree;
        self.repair.request_due(
            Micros(now),
            self.playout.play_from(),
            |stripe| tree.parent(stripe),
            self.place.stripes,
            &mut self.neighbours,
            &mut self.rng,
            &mut self.timers,
            &mut self.out,
        );
        if self.timers.expired(Timer::EndDeadline, Micros(now)) {
            self.timers.clear(Timer::EndDeadline);
            self.playout.end_of_input(now);
            self.drain_playout(now);
        }
        if self.timers.expired(Timer::Linger, Micros(now)) && !self.is_finished() {
            let how = self.playout.finish.clone();
            self.finish(how);
        }
    }

    /// The node's work is over: it leaves and tells the driver how it ended.
    pub(super) fn finish(&mut self, how: Finish) {
        self.timers.clear(Timer::Linger);
        self.timers.clear(Timer::EndDeadline);
        self.playout.lifecycle = Lifecycle::Finished {
            last: self.playout.lifecycle.end(),
        };
        self.leave();
        self.out.event(Event::Finished(how));
    }

    // ---- membership ----------------------------------------------------------------------

    fn on_hello(&mut self, from: SocketAddr, hello: &wire::Hello, len: usize) {
        let answer = self.membership.on_hello(
            from,
            hello,
            len,
            self.place.stripes,
            self.highest,
            &mut self.out,
        );
        if let Some(HelloAnswer {
            assigned,
            nonce,
            token,
        }) = answer
        {
            let welcome = Message::Welcome(Box::new(wire::Welcome {
                nonce,
                token,
                role: self.cfg.role,
                index: self.place.index,
                member: self.place.member,
                stripes: self.place.stripes,
                assigned,
                latest_keyframe: self.latest_keyframe.map(|s| s.0),
                latest_seq: self.highest.map(|s| s.0),
                observed: from,
            }));
            self.out.send_owned(from, welcome);
        }
    }

    fn on_welcome(&mut self, now: u64, from: SocketAddr, welcome: &wire::Welcome) {
        let Some(attempt) = self
            .membership
            .take_hello(from, welcome.nonce, &mut self.out)
        else {
            return;
        };
        let lan = self.membership.on_our_lan(&from) || self.reach.on_our_subnet(from);
        self.reach.observe(from, welcome.observed, lan);
        if self.cfg.role == Role::Peer {
            self.take_place(welcome);
            // Only the seed knows whether the stream has begun (Playout::choose_start).
            if welcome.role == Role::Seed && welcome.latest_seq.is_none() {
                self.playout.joined_before_stream = true;
            }
            if self.playout.play_from().is_none()
                && (welcome.role == Role::Seed || welcome.index > 0)
            {
                if let Some((start, last)) = self.playout.choose_start(
                    welcome.latest_keyframe.map(Seq),
                    welcome.latest_seq.map(Seq),
                ) {
                    self.set_play_from(now, start, last);
                }
            }
        }
        self.membership.welcomed(
            now,
            from,
            welcome,
            attempt,
            &self.place,
            &self.cfg.tuning,
            &mut self.neighbours,
            &mut self.out,
        );
        self.judge_probe(now, from);
    }

    /// Peer: a first Welcome gives this peer its place: the seed assigns an index and member
    /// stripe; joined through a peer a tracker named, the seed unasked (at 100,000 joiners
    /// the seed cannot greet them all), it takes an index from the block of the stream's
    /// present, so stripe trees still grow outwards in join order.
    fn take_place(&mut self, welcome: &wire::Welcome) {
        if self.place.index != 0 {
            return;
        }
        match (welcome.role, welcome.assigned) {
            (Role::Seed, Some((index, member))) => {
                self.place.index = index;
                self.place.member = Some(member);
            }
            (Role::Peer, _) if welcome.index > 0 && welcome.member.is_some() => {
                let slot = self.rng.next_u64() % INDICES_PER_CHUNK;
                let own = join_index_base(welcome.latest_seq.map(Seq)).saturating_add(1 + slot);
                self.place.index = own;
                let member = member_stripe(own, welcome.stripes, &self.neighbours);
                self.place.member = Some(member);
            }
            _ => return,
        }
        self.set_stripes(welcome.stripes);
    }

    fn on_confirm(
        &mut self,
        now: u64,
        from: SocketAddr,
        token: u64,
        index: u64,
        member: Option<u8>,
        lan: Option<SocketAddr>,
    ) {
        self.make_room_for_member(now, from, token, index, member);
        let outcome = self.membership.on_confirm(
            now,
            from,
            token,
            index,
            member,
            lan,
            &self.cfg.tuning,
            &mut self.neighbours,
            &mut self.rng,
            &mut self.out,
        );
        // The seed ranks a newcomer's claimed index no older than a history before its
        // newest chunk (Neighbour::seed_rank_index).
        if outcome == ConfirmOutcome::Added && self.cfg.role == Role::Seed {
            let history = self.cfg.tuning.history as u64;
            let floor =
                join_index_base(self.highest.and_then(|h| h.0.checked_sub(history)).map(Seq));
            if let Some(n) = self.neighbours.get_mut(&from) {
                if n.index < floor {
                    n.index_floor = floor;
                    self.out.stats.counters.positions_ignored += 1;
                }
            }
        }
        // Tell the newcomer what we hold right away, so it can repair from us, and that the
        // stream ended if it did (its address is proven now: no amplification).
        if outcome == ConfirmOutcome::Added && self.highest.is_some() {
            let have = self.have();
            self.out.send(from, &have);
            if let Some(record) = self.end_record() {
                self.out.send_owned(from, Message::Chunk(record));
            }
        }
    }

    /// A neighbour's Have: what it holds and its place in the trees. Everything up to its
    /// newest seq exists: a peer notes what it lacks.
    fn on_have(
        &mut self,
        now: u64,
        from: SocketAddr,
        have: HaveSummary,
        children: u8,
        spare: u8,
        depth: u8,
    ) {
        if self.cfg.role == Role::Seed
            && crate::core::guard::claims_past_the_source(have.highest, self.highest)
        {
            self.refute_claim(now, from, have.highest);
            return;
        }
        let (mut believed, mut place_unheard) = (true, false);
        if let Some(n) = self.neighbours.get_mut(&from) {
            believed = !n.ignores_us();
            // A child that now feeds more or fewer moves in the push order.
            if !n.children.is_empty() && n.feeding != children {
                self.tree.children_changed();
            }
            // Only the seed is at depth 0: a peer that says so lies to attract children.
            n.depth = match (n.role, depth) {
                (Role::Peer, 0) => u8::MAX,
                _ => depth,
            };
            if n.depth != u8::MAX {
                n.attached_depth = n.depth;
            }
            n.have = Some(have);
            n.spare = spare;
            n.feeding = children;
            place_unheard = n.place_unheard();
        }
        if place_unheard {
            let (place, rng, out) = (&self.place, &mut self.rng, &mut self.out);
            self.membership.ask_place(now, from, place, rng, out);
        }
        if self.cfg.role == Role::Peer {
            let proven = self
                .repair
                .corroborate(&self.neighbours)
                .unwrap_or_default();
            // What a neighbour that leaves our requests unanswered claims is not noted
            // missing: we would only ask it again.
            let claimed = match believed {
                true => Seq(have.highest),
                false => proven,
            };
            self.note_known_seq(now, Known { claimed, proven });
        }
    }

    /// A StatsRequest of `len` bytes: answered only when a whole datagram long, so the
    /// reply (at most a datagram) is never larger.
    fn answer_stats(&mut self, now: u64, from: SocketAddr, nonce: u64, len: usize) {
        let local = from.ip().is_loopback();
        if !(local || self.cfg.stats_from_anywhere) || len < wire::STATS_REQUEST_MIN_SIZE {
            self.out.count_dropped();
            return;
        }
        let json = serde_json::to_string(&self.report(now)).unwrap_or_default();
        // The reply must fit one datagram; the per-kind table goes if it does not.
        let reply = Message::StatsReply { nonce, json };
        if wire::encoded_len(&reply) <= MAX_DATAGRAM {
            self.out.send_owned(from, reply);
        } else {
            let mut report = self.report(now);
            report.sent_by_kind.clear();
            let json = serde_json::to_string(&report).unwrap_or_default();
            self.out.send(from, &Message::StatsReply { nonce, json });
        }
    }

    fn drop_neighbour(&mut self, addr: SocketAddr) {
        self.proximity.forget(&addr);
        self.tree.forget(addr);
        self.membership.forget(addr);
        self.neighbours.remove(&addr);
    }

    fn set_stripes(&mut self, stripes: u8) {
        let k = stripes.max(1);
        if k != self.place.stripes {
            self.place.stripes = k;
            self.tree.reset(k);
        }
    }

    fn have(&self) -> Message {
        repair::have(
            &self.history,
            self.highest,
            self.neighbours.children_count(),
            self.tree
                .spare_slots(&self.place, self.cfg.tuning.max_upload, &self.neighbours),
            self.tree.depth(&self.place, &self.neighbours),
        )
    }
}

mod chunks;
mod climbing;
mod nearness;
mod periodic;
mod subscriptions;
mod traversal;

#[cfg(test)]
mod tests;
