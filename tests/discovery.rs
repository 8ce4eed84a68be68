//! Finding the swarm without the seed's address: Debian's opentracker (BEP 15) and a local
//! Mainline DHT (BEP 5, nodes of the `mainline` crate in this process), with the real binaries.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::swarm::{assert_clean_tail, keyframe_offsets, start_peer, start_seed, write_source};
use common::{key_file, require_command, temp_dir};

/// Debian's opentracker on a free UDP port of 127.0.0.1, whitelisting only `info_hash`.
struct Opentracker {
    child: Child,
    url: String,
}

impl Drop for Opentracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn opentracker(dir: &Path, stream_id: &str) -> Opentracker {
    require_command("opentracker", "apt-get install -y opentracker");
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let id: bl::identity::StreamId = stream_id.parse().unwrap();
    let hash = data_encoding::HEXLOWER.encode(&bl::discover::info_hash(&id));
    let whitelist = dir.join("whitelist");
    std::fs::write(&whitelist, format!("{hash}\n")).unwrap();
    let conf = dir.join("opentracker.conf");
    std::fs::write(
        &conf,
        format!(
            "listen.udp 127.0.0.1:{port}\nlisten.tcp 127.0.0.1:{port}\naccess.whitelist {}\n",
            whitelist.display()
        ),
    )
    .unwrap();
    let child = Command::new("opentracker")
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Opentracker {
        child,
        url: format!("udp://127.0.0.1:{port}"),
    }
}

/// A local DHT of `n` mainline nodes on 127.0.0.1 that know each other.
fn local_dht(n: usize) -> (mainline::Testnet, Vec<String>) {
    let testnet = mainline::Testnet::builder(n).build().unwrap();
    let bootstrap = testnet.bootstrap.clone();
    (testnet, bootstrap)
}

fn dht_args(bootstrap: &[String]) -> Vec<String> {
    bootstrap
        .iter()
        .flat_map(|b| ["--dht-bootstrap".to_string(), b.clone()])
        .collect()
}

fn setup(name: &str, seconds: u32, key_seed: u8) -> (PathBuf, Vec<u8>, PathBuf, PathBuf, String) {
    let dir = temp_dir(name);
    let (ts, source) = write_source(&dir, seconds);
    let (key, id) = key_file(&dir, key_seed);
    (dir, ts, source, key, id)
}

#[test]
fn a_link_with_only_a_tracker_joins_and_plays() {
    let (dir, ts, source, key, id) = setup("disc-tracker", 10, 51);
    let tracker = opentracker(&dir, &id);
    let _seed = start_seed(&dir, &source, &key, &["--tracker", &tracker.url]);
    let keyframes = keyframe_offsets(&ts, &key);
    // No seed address anywhere: the stream id and the tracker only.
    let link = format!("bl://{id}?tr={}", tracker.url);
    let mut peer = start_peer(&dir, "viewer", &link, &[]);
    assert_clean_tail(
        "viewer",
        &mut peer,
        &ts,
        &keyframes,
        Instant::now() + Duration::from_secs(60),
    );
    let err = std::fs::read_to_string(&peer.err_path).unwrap();
    assert!(err.contains("tracker udp://127.0.0.1:"), "{err}");
}

/// Two viewers started before the broadcast find each other through the tracker, and no
/// data. Counting each other as neighbours, they stopped asking the tracker and never learnt
/// of the seed when it came: a peer whose neighbours bring no stream keeps asking.
#[test]
fn two_viewers_waiting_before_the_broadcast_both_play_it() {
    let (dir, ts, source, key, id) = setup("disc-early", 10, 54);
    let tracker = opentracker(&dir, &id);
    let link = format!("bl://{id}?tr={}", tracker.url);
    let mut peers = Vec::new();
    for i in 0..2 {
        peers.push(start_peer(
            &dir,
            &format!("early{i}"),
            &link,
            &["--give-up", "0"],
        ));
        std::thread::sleep(Duration::from_secs(1));
    }
    // Long enough for them to meet and to stop counting as fed.
    std::thread::sleep(Duration::from_secs(6));
    let _seed = start_seed(&dir, &source, &key, &["--tracker", &tracker.url]);
    // Before, neither wrote a byte. Each finds the seed within a retry (5 s) of its announce
    // and plays the rest of the 10 s stream. (The later one may join mid-stream and skip a
    // few chunks while it catches up: its output is not asserted a clean tail.)
    for (i, peer) in peers.iter_mut().enumerate() {
        let status = peer.wait(Instant::now() + Duration::from_secs(60));
        let out = peer.output();
        let err = std::fs::read_to_string(&peer.err_path).unwrap();
        assert!(status.success(), "early{i} exited {status}: {err}");
        assert!(
            out.len() > ts.len() / 4,
            "early{i} played {} of {} bytes: {err}",
            out.len(),
            ts.len()
        );
    }
}

#[test]
fn a_link_with_only_the_stream_id_joins_through_the_dht() {
    let (dir, ts, source, key, id) = setup("disc-dht", 12, 52);
    let (_dht, bootstrap) = local_dht(6);
    let args = dht_args(&bootstrap);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _seed = start_seed(&dir, &source, &key, &args);
    let keyframes = keyframe_offsets(&ts, &key);
    let mut peer = start_peer(&dir, "viewer", &format!("bl://{id}"), &args);
    assert_clean_tail(
        "viewer",
        &mut peer,
        &ts,
        &keyframes,
        Instant::now() + Duration::from_secs(60),
    );
}

#[test]
fn peers_keep_playing_when_the_tracker_and_the_dht_die() {
    let (dir, ts, source, key, id) = setup("disc-lose", 16, 53);
    let tracker = opentracker(&dir, &id);
    let (dht, bootstrap) = local_dht(6);
    let mut args = dht_args(&bootstrap);
    args.extend(["--tracker".to_string(), tracker.url.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _seed = start_seed(&dir, &source, &key, &args);
    let keyframes = keyframe_offsets(&ts, &key);
    let link = format!("bl://{id}");
    let mut peers: Vec<_> = (0..3)
        .map(|i| start_peer(&dir, &format!("p{i}"), &link, &args))
        .collect();
    // Once every peer plays, discovery goes away.
    let deadline = Instant::now() + Duration::from_secs(30);
    while peers.iter().any(|p| p.output().len() < 200_000) {
        assert!(Instant::now() < deadline, "peers did not start playing");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(tracker);
    drop(dht);
    for (i, p) in peers.iter_mut().enumerate() {
        assert_clean_tail(
            &format!("p{i}"),
            p,
            &ts,
            &keyframes,
            Instant::now() + Duration::from_secs(60),
        );
    }
}
