//! The engine's lanes: the nodes in two lanes by id parity, and what handling one node's
//! delivery or wake-up does (run the core, route what it sends, check what it plays).

use super::*;

/// The nodes, by id, kept in two lanes by the parity of their id: a node never changes
/// lane, so each lane's cores touch only their own signature memo and copies of the chunks
/// (two threads bouncing one lock and one reference count per chunk between their caches:
/// lanes made 10,000 peers ~1.1x faster), routes what they send and queues it in their own
/// outboxes ([`Lane`]); the lanes stay balanced as peers join.
#[derive(Default)]
pub(crate) struct Nodes {
    pub(crate) lanes: [Vec<SimNode>; 2],
}

/// The lane of node `id`, and its place there.
pub(crate) fn lane_of(id: u32) -> (usize, usize) {
    ((id % 2) as usize, (id / 2) as usize)
}

impl Nodes {
    pub(crate) fn len(&self) -> usize {
        self.lanes[0].len() + self.lanes[1].len()
    }

    pub(crate) fn push(&mut self, node: SimNode) {
        let (lane, _) = lane_of(self.len() as u32);
        self.lanes[lane].push(node);
    }

    pub(crate) fn get(&self, id: usize) -> Option<&SimNode> {
        let (lane, at) = lane_of(u32::try_from(id).ok()?);
        self.lanes[lane].get(at)
    }

    pub(crate) fn get_mut(&mut self, id: usize) -> Option<&mut SimNode> {
        let (lane, at) = lane_of(u32::try_from(id).ok()?);
        self.lanes[lane].get_mut(at)
    }

    /// In id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &SimNode> {
        (0..self.len()).filter_map(|id| self.get(id))
    }
}

impl std::ops::Index<usize> for Nodes {
    type Output = SimNode;
    fn index(&self, id: usize) -> &SimNode {
        let (lane, at) = lane_of(id as u32);
        &self.lanes[lane][at]
    }
}

impl std::ops::IndexMut<usize> for Nodes {
    fn index_mut(&mut self, id: usize) -> &mut SimNode {
        let (lane, at) = lane_of(id as u32);
        &mut self.lanes[lane][at]
    }
}

/// A node as the threads see it: its core, its own ends of the network model, and what it
/// played. Everything an event for this node touches is here (or read-only in [`World`]), so
/// the two threads never write the same memory.
pub(crate) struct SimNode {
    pub(crate) core: Node,
    /// The earliest Wake event queued for this node.
    pub(crate) wake_at: Option<u64>,
    pub(crate) alive: bool,
    pub(crate) finished: bool,
    /// When its uplink is next free (first-come first-served at `upload_bps`).
    pub(crate) uplink_free_at: u64,
    pub(crate) downlink: Downlink,
    pub(crate) playback: Playback,
}

/// A datagram in flight. The seed's chunks travel by seq and the receiver takes its own
/// lane's copy: no reference count is shared between the threads.
pub(crate) enum Payload {
    /// The seed's chunk at `seq`, sent as a [`Message::ChunkPrevPushed`] if `prev_pushed`.
    Authentic {
        seq: u64,
        prev_pushed: bool,
    },
    Message(Message),
}

pub(crate) enum What {
    Deliver {
        to: u32,
        from: u32,
        payload: Payload,
        len: usize,
    },
    Wake {
        node: u32,
    },
    Produce,
    Join,
    Churn,
    Check,
}

pub(crate) struct Ev {
    pub(crate) at: u64,
    pub(crate) what: What,
}

/// Counts one lane's nodes add to as they send and play; summed when the run is measured.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) datagrams_sent: u64,
    pub(crate) datagrams_lost: u64,
    pub(crate) queue_dropped: u64,
    pub(crate) withheld: u64,
    pub(crate) forged_sent: u64,
    pub(crate) forged_played: u64,
    /// Datagrams liars sent in place of what their cores sent.
    pub(crate) lies_sent: u64,
    /// How long datagrams waited at their sender's uplink.
    pub(crate) queue_delay: Histogram,
    /// Play time − capture time of the chunks honest peers played from
    /// [`SETTLED_AFTER_US`] after they joined.
    pub(crate) settled_latency: Histogram,
    /// The seed's warnings (extra roots taken and let go, claims refuted, …), with the time
    /// they were raised, the first [`SEED_LOG_MAX`]: when its upload grew, and why.
    pub(crate) seed_log: Vec<(u64, String)>,
}

/// Seed warnings kept at most: a hostile run refutes a claim per liar, and the log must not
/// grow with the run.
pub(crate) const SEED_LOG_MAX: usize = 256;

impl Tally {
    pub(crate) fn add(&mut self, o: &Tally) {
        self.datagrams_sent += o.datagrams_sent;
        self.datagrams_lost += o.datagrams_lost;
        self.queue_dropped += o.queue_dropped;
        self.withheld += o.withheld;
        self.forged_sent += o.forged_sent;
        self.forged_played += o.forged_played;
        self.lies_sent += o.lies_sent;
        self.queue_delay.merge(&o.queue_delay);
        self.settled_latency.merge(&o.settled_latency);
        let room = SEED_LOG_MAX.saturating_sub(self.seed_log.len());
        self.seed_log.extend(o.seed_log.iter().take(room).cloned());
    }
}

/// What one lane's cores made happen: the events they queued (in the lane's own outboxes,
/// one per lane they are for, so a thread writes only its own lane's) and the peers that
/// started playing, which [`Sim::apply`] hands the tracker lane by lane. Orders depend on
/// lanes, not threads, so one thread and two give the same run.
pub(crate) struct Lane {
    /// Events its cores queued, by the lane they are for.
    pub(crate) outbox: [Calendar<Ev>; 2],
    /// Peers that played their first chunk, with their startup delay.
    pub(crate) started: Vec<(u32, u64)>,
    pub(crate) violation: Option<Violation>,
    pub(crate) tally: Tally,
}

impl Lane {
    pub(crate) fn new() -> Lane {
        Lane {
            // 8 s of 1 ms buckets: every delivery and nearly every timer.
            outbox: [0, 1].map(|_| Calendar::new(8192, EPOCH_US / BUCKET_US)),
            started: Vec::new(),
            violation: None,
            tally: Tally::default(),
        }
    }

    pub(crate) fn queue(&mut self, ev: Ev, to: u32) {
        self.outbox[lane_of(to).0].push(ev.at.div_ceil(BUCKET_US), ev);
    }

    pub(crate) fn fail(&mut self, world: &World, what: String) {
        if self.violation.is_none() {
            self.violation = Some(world.violation(what));
        }
    }
}

/// A bucket's events for one node (deliveries and wake-ups) are handled in parallel when
/// there are at least this many between two model events: fewer are not worth a thread.
pub(crate) const PARALLEL_MIN_EVENTS: usize = 512;

/// Handling a delivery or wake-up: the datagram may be lost on the receiver's downlink,
/// the core runs, and what it sends is routed. It touches nothing but `node` and its `lane`,
/// so the events of different lanes can run on different threads.
pub(crate) fn step(node: &mut SimNode, id: u32, ev: Ev, world: &World, lane: &mut Lane) {
    if !node.alive {
        return;
    }
    match ev.what {
        What::Deliver {
            from, payload, len, ..
        } => {
            if node.downlink.lost(world.loss, world.burst) {
                lane.tally.datagrams_lost += 1;
                return;
            }
            let message = match payload {
                Payload::Message(message) => message,
                Payload::Authentic { seq, prev_pushed } => {
                    match world.authentic[lane_of(id).0].get(seq as usize) {
                        Some(chunk) if prev_pushed => Message::ChunkPrevPushed(chunk.clone()),
                        Some(chunk) => Message::Chunk(chunk.clone()),
                        None => return,
                    }
                }
            };
            node.core
                .handle_message(world.now, addr_of(from), message, len)
        }
        What::Wake { .. } => {
            if node.wake_at != Some(ev.at) {
                return;
            }
            node.wake_at = None;
            if node.core.poll_timeout() <= world.now {
                node.core.handle_timeout(world.now);
            }
        }
        What::Produce | What::Join | What::Churn | What::Check => return,
    }
    collect(node, id, world, lane);
}

/// Routes a core's transmits, acts on its events and queues its next wake-up.
pub(crate) fn collect(node: &mut SimNode, id: u32, world: &World, lane: &mut Lane) {
    let due = loop {
        match node.core.poll_output() {
            Output::Transmit(t) => route(node, id, t, world, lane),
            Output::Event(Event::Play(chunk)) => play(node, id, &chunk, world, lane),
            Output::Event(Event::Warning(what)) => {
                if id == 0 && lane.tally.seed_log.len() < SEED_LOG_MAX {
                    lane.tally.seed_log.push((world.now, what));
                }
            }
            Output::Event(Event::Internal(what)) => {
                lane.fail(world, format!("{}: {what}", addr_of(id)));
            }
            Output::Event(Event::Finished(_)) => node.finished = true,
            Output::Timeout(due) => break due,
        }
    };
    if node.alive && !node.finished {
        let due = due.max(world.now + 1);
        if node.wake_at.is_none_or(|w| due < w) {
            let at = due.div_ceil(BUCKET_US) * BUCKET_US;
            node.wake_at = Some(at);
            lane.queue(
                Ev {
                    at,
                    what: What::Wake { node: id },
                },
                id,
            );
        }
    }
}

/// A datagram from `sender` (node `from`) onto the network: through its uplink queue (or
/// dropped there), delayed by the distance, delivered as an event. Loss is drawn on arrival.
/// What free riders, forgers and liars send is rewritten here, as their clients would.
pub(crate) fn route(sender: &mut SimNode, from: u32, t: Transmit, world: &World, lane: &mut Lane) {
    lane.tally.datagrams_sent += 1;
    if let Err(e) = wire::validate(&t.message) {
        lane.fail(
            world,
            format!(
                "{} sent a {} the decoder refuses: {e}",
                addr_of(from),
                t.message.kind()
            ),
        );
        return;
    }
    let Some(to) = id_of(t.to).filter(|&to| (to as usize) < world.places.len()) else {
        return;
    };
    let Some(place) = world.places.get(from as usize) else {
        return;
    };
    let (mut payload, len) = (Payload::Message(t.message), t.len);
    if place.kind == Kind::Liar {
        let Payload::Message(message) = payload else {
            return;
        };
        match adversary::lie(message, from, world) {
            adversary::Lie::Withhold => lane.tally.withheld += 1,
            adversary::Lie::Send(datagrams) => {
                lane.tally.lies_sent += datagrams.len() as u64;
                for (payload, len) in datagrams {
                    transmit(sender, from, to, payload, len, world, lane);
                }
            }
        }
        return;
    }
    if place.kind == Kind::Withholder {
        let Payload::Message(message) = payload else {
            return;
        };
        match adversary::withhold(message, to) {
            Some((payload, len)) => transmit(sender, from, to, payload, len, world, lane),
            None => lane.tally.withheld += 1,
        }
        return;
    }
    let chunk = match &payload {
        Payload::Message(m) => m
            .chunk()
            .map(|c| (c, matches!(m, Message::ChunkPrevPushed(_)))),
        Payload::Authentic { .. } => None,
    };
    if let Some((chunk, prev_pushed)) = chunk {
        match place.kind {
            Kind::FreeRider => {
                lane.tally.withheld += 1;
                return;
            }
            Kind::Forger => {
                let mut forged = (**chunk).clone();
                if let Some(b) = forged.payload.get_mut(PACKET_SIZE / 2) {
                    *b ^= 0x5a;
                }
                payload = Payload::Message(Message::Chunk(Arc::new(forged)));
                lane.tally.forged_sent += 1;
            }
            Kind::Seed | Kind::Honest | Kind::Liar | Kind::Withholder => {
                let seq = chunk.seq;
                if world.authentic[lane_of(from).0]
                    .get(seq as usize)
                    .is_some_and(|c| Arc::ptr_eq(c, chunk))
                {
                    payload = Payload::Authentic { seq, prev_pushed };
                }
            }
        }
    }
    transmit(sender, from, to, payload, len, world, lane);
}

/// `payload` of `len` bytes from `from` to `to`: through the sender's uplink queue (or
/// dropped there), delayed by the distance.
fn transmit(
    sender: &mut SimNode,
    from: u32,
    to: u32,
    payload: Payload,
    len: usize,
    world: &World,
    lane: &mut Lane,
) {
    let Some(place) = world.places.get(from as usize) else {
        return;
    };
    let now = world.now;
    let wire_bits = (len as u64 + HEADER_BYTES) * 8;
    let start = sender.uplink_free_at.max(now);
    let departs = start + wire_bits * 1_000_000 / place.upload_bps.max(1);
    if departs - now > UPLOAD_QUEUE_US {
        lane.tally.queue_dropped += 1;
        return;
    }
    sender.uplink_free_at = departs;
    lane.tally.queue_delay.record(start - now);
    lane.queue(
        Ev {
            at: departs + world.propagation_us(from, to),
            what: What::Deliver {
                to,
                from,
                payload,
                len,
            },
        },
        to,
    );
}

/// Node `id` played `chunk`: it must be the seed's, and come after what it played before.
pub(crate) fn play(
    node: &mut SimNode,
    id: u32,
    chunk: &Arc<Chunk>,
    world: &World,
    lane: &mut Lane,
) {
    let seq = chunk.seq;
    let authentic = world.authentic[lane_of(id).0]
        .get(seq as usize)
        .is_some_and(|a| Arc::ptr_eq(a, chunk) || **a == **chunk);
    if !authentic {
        lane.tally.forged_played += 1;
        lane.fail(
            world,
            format!(
                "{} played chunk {seq}, which the seed did not produce",
                addr_of(id)
            ),
        );
    }
    let p = &mut node.playback;
    if let Some(last) = p.last_seq.filter(|&last| seq <= last) {
        lane.fail(
            world,
            format!(
                "{} played chunk {seq} after chunk {last}: output out of order",
                addr_of(id)
            ),
        );
        return;
    }
    let settled = world.now >= p.joined_at + SETTLED_AFTER_US;
    if settled
        && world
            .places
            .get(id as usize)
            .is_some_and(|place| !place.kind.is_adversary())
    {
        lane.tally
            .settled_latency
            .record(world.now.saturating_sub(chunk.capture_us));
    }
    p.last_seq = Some(seq);
    p.first_seq.get_or_insert(seq);
    p.played += 1;
    if p.first_play_at.is_none() {
        p.first_play_at = Some(world.now);
        lane.started.push((id, world.now - p.joined_at));
    }
}

/// The node a delivery or wake-up is for; `None` for the model's own events.
pub(crate) fn target(ev: &Ev) -> Option<u32> {
    match ev.what {
        What::Deliver { to, .. } => Some(to),
        What::Wake { node } => Some(node),
        What::Produce | What::Join | What::Churn | What::Check => None,
    }
}
