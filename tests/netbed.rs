//! The swarm behind home NATs: scripts/netbed's network namespaces (a public host, three
//! homes behind NAT routers, one of them symmetric), the real binaries in them, all traffic
//! inside the namespaces. Needs root, ip and iptables (CI runs as root; .ci/run installs them).

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::swarm::{keyframe_offsets, last_json, wait_until, write_source};
use common::{bin, key_file, require_command, temp_dir};

/// The test bed, removed when dropped.
struct Netbed {
    name: String,
    script: PathBuf,
}

impl Netbed {
    fn up() -> Netbed {
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        assert!(
            is_root,
            "the netbed test needs root (network namespaces, iptables)"
        );
        for tool in ["ip", "iptables"] {
            require_command(tool, "apt-get install -y iproute2 iptables");
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/netbed");
        let name = format!("blt{}", std::process::id() % 100_000);
        let out = Command::new(&script).args(["up", &name]).output().unwrap();
        assert!(
            out.status.success(),
            "netbed up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netbed { name, script }
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.name)
    }
}

impl Drop for Netbed {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .args(["down", &self.name])
            .status();
    }
}

/// A local Mainline DHT of `n` nodes (the `mainline` crate's testnet) living in namespace
/// `ns`: a thread of this process enters it (setns) and starts them there, so their sockets
/// and threads belong to it.
fn dht_in(ns: &str, n: usize) -> (mainline::Testnet, Vec<String>) {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = File::open(&path).unwrap();
        // SAFETY: setns on a valid namespace fd affects only this thread, which then builds
        // the DHT nodes and ends; nothing else runs on it.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        let testnet = mainline::Testnet::builder(n)
            .bind_address("10.77.0.1".parse().unwrap())
            .build()
            .unwrap();
        let bootstrap = testnet.bootstrap.clone();
        (testnet, bootstrap)
    })
    .join()
    .unwrap()
}

struct Proc {
    child: Child,
    err: PathBuf,
    out: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `command` in namespace `ns` through sh, stdout and stderr to files.
fn spawn_in(ns: &str, command: &str, dir: &Path, name: &str) -> Proc {
    let out = dir.join(format!("{name}.out"));
    let err = dir.join(format!("{name}.err"));
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", command])
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    Proc { child, err, out }
}

#[test]
fn nine_peers_behind_three_nats_play_and_feed_each_other() {
    let bed = Netbed::up();
    let dir = temp_dir("netbed");
    let (ts, source) = write_source(&dir, 16);
    let (key, id) = key_file(&dir, 61);
    let keyframes = keyframe_offsets(&ts, &key);
    // Debian's opentracker on the public host, whitelisting the stream's infohash.
    let stream: bl::identity::StreamId = id.parse().unwrap();
    let hash = data_encoding::HEXLOWER.encode(&bl::discover::info_hash(&stream));
    std::fs::write(dir.join("whitelist"), format!("{hash}\n")).unwrap();
    std::fs::write(
        dir.join("opentracker.conf"),
        format!(
            "listen.udp 10.77.0.1:6969\nlisten.tcp 10.77.0.1:6969\naccess.whitelist {}\n",
            dir.join("whitelist").display()
        ),
    )
    .unwrap();
    // `exec`: killing the test's child must kill the tracker, not only the shell around it.
    let tracker_cmd = format!(
        "exec opentracker -f {}",
        dir.join("opentracker.conf").display()
    );
    // And a DHT of six nodes there.
    let (dht, dht_nodes) = dht_in(&bed.ns("pub"), 6);
    let dht_args: String = dht_nodes
        .iter()
        .map(|n| format!(" --dht-bootstrap {n}"))
        .collect();
    let tracker = spawn_in(&bed.ns("pub"), &tracker_cmd, &dir, "tracker");
    std::thread::sleep(Duration::from_millis(300));
    let seed_cmd = format!(
        "ffmpeg -hide_banner -loglevel error -nostdin -re -i {} -c copy -f mpegts - \
         | {} --key {} -q | {} --listen 10.77.0.1:7000 --stats-json --rng-seed 7 \
         --tracker udp://10.77.0.1:6969{dht_args}",
        source.display(),
        bin("bl-chunk").display(),
        key.display(),
        bin("bl-seed").display()
    );
    let mut seed = spawn_in(&bed.ns("pub"), &seed_cmd, &dir, "seed");
    std::thread::sleep(Duration::from_millis(500));
    let mut peers = Vec::new();
    for home in 1..=3 {
        // Home 1 has the seed's address; home 2 only the stream id (the DHT); home 3,
        // behind the symmetric NAT, the stream id and the tracker.
        let link = match home {
            1 => format!("bl://{id}@10.77.0.1:7000"),
            2 => format!("bl://{id}{dht_args}"),
            _ => format!("'bl://{id}?tr=udp://10.77.0.1:6969'"),
        };
        for p in 1..=3 {
            let cmd = format!(
                "exec {} {link} --listen 0.0.0.0:{} --stats-json --rng-seed {}",
                bin("bl-peer").display(),
                7100 + p,
                home * 10 + p
            );
            let name = format!("h{home}p{p}");
            peers.push((
                name.clone(),
                home,
                spawn_in(&bed.ns(&format!("h{home}")), &cmd, &dir, &name),
            ));
        }
    }
    // Once every peer plays, discovery goes away: the tracker is killed, the DHT shut down.
    let deadline = Instant::now() + Duration::from_secs(40);
    while peers
        .iter()
        .any(|(_, _, p)| std::fs::metadata(&p.out).map_or(0, |m| m.len()) < 200_000)
    {
        assert!(
            Instant::now() < deadline,
            "the peers did not all start playing"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(tracker);
    drop(dht);
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut from_seed, mut from_peers) = (0u64, 0u64);
    for (name, home, p) in peers.iter_mut() {
        let home = *home;
        let status = wait_until(&mut p.child, deadline, name);
        let err = std::fs::read_to_string(&p.err).unwrap();
        assert!(status.success(), "{name} exited {status}: {err}");
        let out = std::fs::read(&p.out).unwrap();
        assert!(
            !out.is_empty() && ts.ends_with(&out),
            "{name}: {} bytes, not a tail of the source: {err}",
            out.len()
        );
        assert!(
            keyframes.contains(&(ts.len() - out.len())),
            "{name} starts off a keyframe"
        );
        let said = match home {
            2 => "looking for the swarm through the DHT",
            3 => "tracker udp://10.77.0.1:6969: ",
            _ => "",
        };
        assert!(
            err.contains(said),
            "{name} never looked where it was told: {err}"
        );
        let stats = last_json(&p.err);
        let reach = stats["reachability"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let expected = if home == 3 { "symmetric" } else { "nat" };
        assert_eq!(reach, expected, "{name}: {stats}");
        from_seed += stats["chunk_bytes_from_seed"].as_u64().unwrap();
        from_peers += stats["chunk_bytes_from_peers"].as_u64().unwrap();
    }
    wait_until(&mut seed.child, deadline, "bl-seed");
    let seed_stats = last_json(&seed.err);
    let upload = seed_stats["chunk_bytes_sent"].as_f64().unwrap()
        / seed_stats["stream_bytes"].as_f64().unwrap();
    let share = from_peers as f64 / (from_seed + from_peers) as f64;
    println!("{{\"from_peers_share\": {share:.3}, \"seed_upload_copies\": {upload:.3}}}");
    assert!(
        share > 0.5,
        "NATed peers got only {share:.3} of their bytes from peers"
    );
    assert!(
        upload <= 2.0,
        "the seed uploaded {upload:.2} copies of the stream"
    );
}
