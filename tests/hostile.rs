//! A hostile neighbour against a real swarm: a process that speaks the wire protocol,
//! completes handshakes with one viewer of a 10-peer swarm (and welcomes it as if it were the
//! seed), then sends it everything unsigned it can lie with. No honest viewer's output may
//! differ from the source, and the seed keeps serving (docs/PROTOCOL.md, "What a hostile
//! neighbour can and cannot do").

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bl::chunk::Chunk;
use bl::identity::{StreamId, StreamKey};
use bl::wire::{self, Message, PeerInfo, Role, Welcome};
use common::swarm::*;
use common::*;

/// Everything the rogue sends its victim, over and over: Haves with huge, zero and backwards
/// ranges claiming depth 0 and room to spare, peer lists of nobodies, a version-1 End.
fn lies(round: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (first, highest) in [(0, u64::MAX), (0, 0), (u64::MAX - 5, 3), (1000, 10)] {
        let have = Message::Have {
            first,
            highest,
            recent: u128::MAX,
            children: 0,
            spare: 255,
            depth: 0,
        };
        out.push(wire::encode(&have).unwrap());
    }
    let nobodies: Vec<PeerInfo> = (0..24u16)
        .map(|i| PeerInfo {
            addr: SocketAddr::from(([127, 0, 0, 2], 20_000 + (round as u16 % 100) * 24 + i)),
            index: 1,
            member: (i % 4) as u8,
            lan: None,
        })
        .collect();
    out.push(wire::encode(&Message::Peers { peers: nobodies }).unwrap());
    // The unsigned End of wire version 1 (message 11, last seq 0): stopped every viewer.
    out.push(vec![b'b', b'l', 1, 11, 0]);
    out
}

/// Answers the victim's Hello with a Welcome that claims to be the seed and names seqs at
/// the end of u64 as the newest keyframe and chunk; greets the victim itself; accepts every
/// Subscribe (and then never forwards a chunk).
fn rogue(socket: UdpSocket, victim: SocketAddr, stream: StreamId, stop: Arc<AtomicBool>) -> u64 {
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let hello = wire::encode(&wire::hello(stream, 7, Role::Peer, Some(5), Some(0))).unwrap();
    let mut buf = [0u8; 2048];
    let mut sent = 0u64;
    let mut next_lie = Instant::now();
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let reply = match wire::decode(&buf[..n]) {
                Ok(Message::Hello(h)) if from == victim => {
                    Some(Message::Welcome(Box::new(Welcome {
                        nonce: h.nonce,
                        token: 1,
                        role: Role::Seed,
                        index: 0,
                        member: None,
                        stripes: 4,
                        assigned: Some((2, 0)),
                        latest_keyframe: Some(u64::MAX - 10),
                        latest_seq: Some(u64::MAX),
                        observed: from,
                    })))
                }
                Ok(Message::Welcome(w)) => Some(Message::Confirm {
                    token: w.token,
                    index: 5,
                    member: Some(0),
                    lan: None,
                }),
                Ok(Message::Subscribe { stripe, .. }) => Some(Message::SubscribeReply {
                    stripe,
                    accepted: true,
                }),
                _ => None,
            };
            if let Some(reply) = reply {
                socket
                    .send_to(&wire::encode(&reply).unwrap(), from)
                    .unwrap();
                sent += 1;
            }
        }
        if Instant::now() >= next_lie {
            next_lie += Duration::from_millis(100);
            round += 1;
            if round % 20 == 1 {
                socket.send_to(&hello, victim).unwrap();
            }
            for datagram in lies(round) {
                socket.send_to(&datagram, victim).unwrap();
                sent += 1;
            }
        }
    }
    sent
}

#[test]
fn a_hostile_neighbour_cannot_stop_skip_or_move_anyones_stream() {
    let dir = temp_dir("hostile");
    let (key, id) = key_file(&dir, 1);
    let (source, source_path) = write_source(&dir, 20);
    let keyframes = keyframe_offsets(&source, &key);
    let stream: StreamId = id.parse().unwrap();
    let rogue_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rogue_addr = rogue_socket.local_addr().unwrap();
    let mut seed = start_seed(&dir, &source_path, &key, &[]);
    // The victim knows the rogue from the start (a tracker named it): its first Welcome may
    // well be the rogue's.
    let victim_addr = free_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let rogue_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || rogue(rogue_socket, victim_addr, stream, stop))
    };
    let victim_link = format!("bl://{id}@{rogue_addr},{}", seed.addr);
    let mut peers = vec![start_peer_at(
        &dir,
        "victim",
        &victim_link,
        victim_addr,
        &["--rng-seed", "1"],
    )];
    for i in 1..10 {
        std::thread::sleep(Duration::from_millis(100));
        let seed_arg = (i + 1).to_string();
        peers.push(start_peer(
            &dir,
            &format!("peer{i}"),
            &seed.link,
            &["--rng-seed", &seed_arg],
        ));
    }
    // At the end, a forged end record: banned, nothing ends.
    std::thread::sleep(Duration::from_secs(12));
    let forger = StreamKey::from_seed([66; 32]);
    let forged_end = Chunk::end_record(&forger, 3_000, 0);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(
        rogue_handshake(&socket, victim_addr, stream),
        "no handshake with the victim"
    );
    socket
        .send_to(
            &wire::encode(&Message::Chunk(forged_end.into())).unwrap(),
            victim_addr,
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, peer) in peers.iter_mut().enumerate() {
        assert_clean_tail(&format!("peer{i}"), peer, &source, &keyframes, deadline);
    }
    stop.store(true, Ordering::Relaxed);
    let sent = rogue_thread.join().unwrap();
    assert!(sent > 500, "the rogue sent only {sent} datagrams");
    let victim = peers[0].stats();
    assert_eq!(num(&victim, "chunks_skipped"), 0, "{victim}");
    assert!(
        num(&victim, "peers_banned") >= 1,
        "the forged end got its sender banned: {victim}"
    );
    assert!(seed.wait(deadline).success());
}
