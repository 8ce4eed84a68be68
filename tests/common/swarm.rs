//! A real swarm on 127.0.0.1 for tests: ffmpeg -re | bl-chunk | bl-seed, and bl-peer processes.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bl::frame::{self, FrameItem};
use bl::wire::{self, Message, Role};

use super::{bin, generated_ts, require_tool, run};

pub struct Seed {
    pub link: String,
    pub addr: SocketAddr,
    pub stream_id: String,
    ffmpeg: Child,
    chunk: Child,
    pub seed: Child,
    pub stderr_path: PathBuf,
}

/// Starts `ffmpeg -re -i source -c copy -f mpegts - | bl-chunk --key KEY | bl-seed`.
pub fn start_seed(dir: &Path, source: &Path, key: &Path, extra: &[&str]) -> Seed {
    start_seed_at(dir, source, key, "127.0.0.1:0", extra)
}

/// The same, with the seed listening at `listen`.
pub fn start_seed_at(dir: &Path, source: &Path, key: &Path, listen: &str, extra: &[&str]) -> Seed {
    require_tool("ffmpeg");
    let mut ffmpeg = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-i",
        ])
        .arg(source)
        .args(["-c", "copy", "-f", "mpegts", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut chunk = Command::new(bin("bl-chunk"))
        .arg("--key")
        .arg(key)
        .arg("-q")
        .stdin(ffmpeg.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr_path = dir.join("seed.err");
    let mut seed = Command::new(bin("bl-seed"))
        .args(["--listen", listen, "--stats-json", "--rng-seed", "7"])
        .args(extra)
        .stdin(chunk.stdout.take().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // First stderr line names the link; the rest is copied to a file for later reading.
    let mut lines = BufReader::new(seed.stderr.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    let link = first
        .split_whitespace()
        .find(|w| w.starts_with("bl://"))
        .unwrap_or_else(|| panic!("no link in {first:?}"))
        .to_string();
    let mut file = File::create(&stderr_path).unwrap();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut lines, &mut file);
    });
    let without_trackers = link.split('?').next().unwrap();
    let (id, host) = without_trackers
        .trim_start_matches("bl://")
        .split_once('@')
        .unwrap();
    Seed {
        addr: host.parse().unwrap(),
        stream_id: id.to_string(),
        link,
        ffmpeg,
        chunk,
        seed,
        stderr_path,
    }
}

impl Seed {
    pub fn wait(&mut self, deadline: Instant) -> ExitStatus {
        let status = wait_until(&mut self.seed, deadline, "bl-seed");
        let _ = self.chunk.wait();
        let _ = self.ffmpeg.wait();
        status
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        for c in [&mut self.ffmpeg, &mut self.chunk, &mut self.seed] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Peer {
    pub child: Child,
    pub addr: SocketAddr,
    pub out_path: PathBuf,
    pub err_path: PathBuf,
    pub started: Instant,
}

/// A free UDP port on 127.0.0.1 (bound, then released for the peer to take).
pub fn free_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub fn start_peer(dir: &Path, name: &str, link: &str, extra: &[&str]) -> Peer {
    start_peer_at(dir, name, link, free_addr(), extra)
}

/// A peer listening on `addr`.
pub fn start_peer_at(dir: &Path, name: &str, link: &str, addr: SocketAddr, extra: &[&str]) -> Peer {
    let out_path = dir.join(format!("{name}.out"));
    let err_path = dir.join(format!("{name}.err"));
    let child = Command::new(bin("bl-peer"))
        .arg(link)
        .args(["--listen", &addr.to_string(), "--stats-json"])
        .args(extra)
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    Peer {
        child,
        addr,
        out_path,
        err_path,
        started: Instant::now(),
    }
}

impl Peer {
    pub fn wait(&mut self, deadline: Instant) -> ExitStatus {
        wait_until(&mut self.child, deadline, "bl-peer")
    }
    pub fn output(&self) -> Vec<u8> {
        std::fs::read(&self.out_path).unwrap()
    }
    pub fn stats(&self) -> serde_json::Value {
        last_json(&self.err_path)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_until(child: &mut Child, deadline: Instant, what: &str) -> ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not exit before the deadline");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last JSON object line in a stderr file (a node's --stats-json report).
pub fn last_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no stats JSON in {}:\n{text}", path.display()));
    serde_json::from_str(line).unwrap()
}

pub fn num(v: &serde_json::Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// Byte offsets in `ts` where bl-chunk starts a keyframe chunk (independent of timing).
pub fn keyframe_offsets(ts: &[u8], key: &Path) -> BTreeSet<usize> {
    let out = run("bl-chunk", &["--key", key.to_str().unwrap(), "-q"], ts);
    let (_, items) = frame::read_all(&out.stdout).unwrap();
    let mut offset = 0;
    let mut starts = BTreeSet::new();
    for item in items {
        if let FrameItem::Chunk { chunk, .. } = item {
            if chunk.is_keyframe() {
                starts.insert(offset);
            }
            offset += chunk.payload.len();
        }
    }
    starts
}

/// A peer's stderr with its "skipped chunks" lines (hundreds when a stripe starves) folded
/// into their count, the first and the last: a CI log keeps only part of a failure's
/// output, and the stats line at the end says why.
fn brief(err: &str) -> String {
    let (skipped, mut kept): (Vec<&str>, Vec<&str>) =
        err.lines().partition(|l| l.contains("skipped chunks"));
    let summary;
    if let (Some(first), Some(last)) = (skipped.first(), skipped.last()) {
        let n = skipped.len();
        summary = format!("{n} lines of skipped chunks, from {first:?} to {last:?}");
        kept.insert(0, &summary);
    }
    kept.join("\n")
}

/// The checks every finished peer must pass: exit 0, output a byte-identical tail of the source
/// that starts at a keyframe.
pub fn assert_clean_tail(
    name: &str,
    peer: &mut Peer,
    source: &[u8],
    keyframes: &BTreeSet<usize>,
    deadline: Instant,
) {
    let status = peer.wait(deadline);
    let err = brief(&std::fs::read_to_string(&peer.err_path).unwrap());
    assert!(status.success(), "{name} exited {status}: {err}");
    let out = peer.output();
    assert!(!out.is_empty(), "{name} wrote nothing: {err}");
    assert!(
        source.ends_with(&out),
        "{name}: output ({} bytes) is not a tail of the source: {err}",
        out.len()
    );
    let start = source.len() - out.len();
    assert!(
        keyframes.contains(&start),
        "{name}: output starts at byte {start}, not at a keyframe chunk"
    );
}

pub fn write_source(dir: &Path, seconds: u32) -> (Vec<u8>, std::path::PathBuf) {
    let ts = generated_ts(seconds);
    let path = dir.join("source.ts");
    std::fs::write(&path, &ts).unwrap();
    (ts, path)
}

/// A process that speaks the protocol: handshakes like a peer, then pushes forged chunks.
pub fn rogue_handshake(
    socket: &UdpSocket,
    target: std::net::SocketAddr,
    stream: bl::identity::StreamId,
) -> bool {
    let hello = wire::encode(&wire::hello(stream, 42, Role::Peer, Some(9999), Some(0))).unwrap();
    socket.send_to(&hello, target).unwrap();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if from != target {
            continue;
        }
        if let Ok(Message::Welcome(welcome)) = wire::decode(&buf[..n]) {
            let token = welcome.token;
            let confirm = wire::encode(&Message::Confirm {
                token,
                index: 9999,
                member: Some(0),
                lan: None,
            })
            .unwrap();
            socket.send_to(&confirm, target).unwrap();
            return true;
        }
    }
    false
}
