//! bl-peer --http with real clients: players reading /stream.ts, HLS fetches checked by
//! ffprobe, a stalled client, 1,000 malformed requests, and headless Chromium playing the page.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{engine_addr, get, StreamReader};
use common::swarm::{
    free_addr, last_json, start_peer, start_seed, start_seed_at, write_source, Peer,
};
use common::{ffprobe_decode, key_file, require_command, temp_dir, Rng};

/// A peer serving HTTP on an ephemeral port, for a seed that will listen at `seed_addr`.
fn http_peer(dir: &Path, id: &str, seed_addr: SocketAddr) -> (Peer, SocketAddr) {
    let link = format!("bl://{id}@{seed_addr}");
    let peer = start_peer(
        dir,
        "viewer",
        &link,
        &["--http", "127.0.0.1:0", "--rng-seed", "3"],
    );
    let addr = engine_addr(&peer.err_path);
    (peer, addr)
}

fn assert_decodes(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let (errors, first_key) = ffprobe_decode(&path);
    assert!(errors.is_empty(), "{name}: ffprobe: {errors}");
    assert_eq!(first_key, Some(true), "{name} does not start at a keyframe");
}

/// Where a file's media ends (start time + duration), by ffprobe.
fn media_end(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=start_time,duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.trim().split(',').map(|f| f.parse::<f64>().unwrap());
    fields.next().unwrap() + fields.next().unwrap()
}

/// RFC 8216: every EXTINF rounds to at most the target duration, every part lasts at most
/// the part target.
fn assert_playlist_rules(text: &str) {
    let value = |prefix: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap();
        line[prefix.len()..]
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let target = value("#EXT-X-TARGETDURATION:");
    let part_target = value("#EXT-X-PART-INF:PART-TARGET=");
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            let d: f64 = d.trim_end_matches(',').parse().unwrap();
            assert!(
                d.round() <= target,
                "EXTINF {d} over target {target}: {text}"
            );
        }
        if let Some(rest) = line.strip_prefix("#EXT-X-PART:DURATION=") {
            let d: f64 = rest.split(',').next().unwrap().parse().unwrap();
            assert!(d <= part_target, "part of {d} s over {part_target}: {text}");
        }
    }
}

/// URIs in a playlist: whole segments and parts.
fn uris(playlist: &str) -> (Vec<String>, Vec<String>) {
    let segments = playlist
        .lines()
        .filter(|l| l.starts_with("seg/"))
        .map(String::from)
        .collect();
    let parts = playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .filter_map(|l| {
            l.split("URI=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(String::from)
        })
        .collect();
    (segments, parts)
}

#[test]
fn twenty_players_get_identical_bytes_and_hls_segments_decode() {
    let dir = temp_dir("http-identical");
    // 20 s: the checks below take about 7 s of wall time on a loaded 2-core CI runner after
    // the first 5 s, and a part asked for after the stream's end gets a 503 (CI saw it with 10 s).
    let (_, source) = write_source(&dir, 20);
    let (key, id) = key_file(&dir, 41);
    let seed_addr = free_addr();
    // The peer and its 20 players are up before the seed: everyone starts at the first
    // keyframe, so every body must equal the peer's stdout exactly.
    let (mut peer, http) = http_peer(&dir, &id, seed_addr);
    let players: Vec<StreamReader> = (0..20)
        .map(|_| StreamReader::start(http, "/stream.ts", None))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The seed serves HTTP too: the broadcaster's preview.
    let seed = start_seed_at(
        &dir,
        &source,
        &key,
        &seed_addr.to_string(),
        &["--http", "127.0.0.1:0"],
    );

    // A playlist asked for at once waits for the first complete segment, then lists it.
    let early = std::thread::spawn(move || get(http, "/live.m3u8"));
    // Mid-stream: real players, the playlist, its segments, and the parts of a segment.
    std::thread::sleep(Duration::from_secs(5));
    let early = early.join().unwrap();
    assert_eq!(early.status, 200);
    assert!(early.text().contains("seg/0.ts"), "{}", early.text());
    // ffmpeg records the HLS stream from here to its end (it polls the playlist).
    let recording = dir.join("hls-recording.ts");
    let recorder = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(format!("http://{http}/live.m3u8"))
        .args(["-c", "copy", "-y"])
        .arg(&recording)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mpv = Command::new("mpv")
        .args(["--no-config", "--vo=null", "--ao=null", "--frames=60"])
        .arg(format!("http://{http}/stream.ts"))
        .output()
        .expect("mpv (apt-get install -y mpv; .ci/run does)");
    assert!(
        mpv.status.success(),
        "mpv: {}",
        String::from_utf8_lossy(&mpv.stderr)
    );
    let hls = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(format!("http://{http}/live.m3u8"))
        .args(["-t", "3", "-f", "null", "-"])
        .output()
        .unwrap();
    let hls_errors = String::from_utf8_lossy(&hls.stderr);
    assert!(
        hls.status.success() && hls_errors.is_empty(),
        "ffmpeg on HLS: {hls_errors}"
    );
    let preview = engine_addr(&seed.stderr_path);
    let seed_playlist = get(preview, "/live.m3u8");
    assert_eq!(seed_playlist.status, 200);
    assert!(
        seed_playlist.text().contains("seg/0.ts"),
        "{}",
        seed_playlist.text()
    );
    assert_eq!(get(preview, "/stats.json").status, 200);
    let playlist = get(http, "/live.m3u8");
    assert_eq!(playlist.status, 200);
    assert_eq!(
        playlist.header("content-type").as_deref(),
        Some("application/vnd.apple.mpegurl")
    );
    let text = playlist.text();
    assert_playlist_rules(&text);
    let (segments, parts) = uris(&text);
    assert!(segments.len() >= 2, "{text}");
    for uri in &segments {
        let seg = get(http, &format!("/{uri}"));
        assert_eq!(seg.status, 200, "{uri}");
        assert_decodes(&dir, &uri.replace('/', "-"), &seg.body);
    }
    // Parts of the last complete segment, joined, are that segment byte for byte.
    let last = segments.last().unwrap().trim_end_matches(".ts");
    let its_parts: Vec<&String> = parts
        .iter()
        .filter(|p| p.starts_with(&format!("{last}.")))
        .collect();
    assert!(
        its_parts.len() >= 3,
        "{last} lists {} parts: {text}",
        its_parts.len()
    );
    let joined: Vec<u8> = its_parts
        .iter()
        .flat_map(|p| get(http, &format!("/{p}")).body)
        .collect();
    assert_eq!(joined, get(http, &format!("/{last}.ts")).body);
    // A blocking reload for the hinted part returns once it exists, listing it.
    let hint = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg/"))
        .expect("a preload hint");
    let (msn, part) = hint.trim_end_matches(".ts\"").split_once('.').unwrap();
    let blocked = get(http, &format!("/live.m3u8?_HLS_msn={msn}&_HLS_part={part}"));
    assert_eq!(blocked.status, 200);
    assert!(
        blocked
            .text()
            .contains(&format!("URI=\"seg/{msn}.{part}.ts\"")),
        "{}",
        blocked.text()
    );
    let hinted = get(http, &format!("/seg/{msn}.{part}.ts"));
    assert_eq!(hinted.status, 200);
    assert!(!hinted.body.is_empty());

    let status = peer.wait(Instant::now() + Duration::from_secs(60));
    assert!(status.success(), "peer exited {status}");
    let stdout = peer.output();
    assert!(
        stdout.len() > 1_000_000,
        "stdout has {} bytes",
        stdout.len()
    );
    for (i, p) in players.into_iter().enumerate() {
        let (r, _) = p.finish();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type").as_deref(), Some("video/mp2t"));
        assert!(
            r.body == stdout,
            "player {i}: {} bytes, stdout {} bytes",
            r.body.len(),
            stdout.len()
        );
    }
    assert_decodes(&dir, "stream.ts", &stdout);
    // The recorder saw the ENDLIST and the last segment: it ends where stdout ends.
    let recorded = recorder.wait_with_output().unwrap();
    let errors = String::from_utf8_lossy(&recorded.stderr);
    assert!(recorded.status.success(), "ffmpeg recording HLS: {errors}");
    let stdout_path = dir.join("stream.ts");
    let (end_hls, end_stdout) = (media_end(&recording), media_end(&stdout_path));
    assert!(
        (end_hls - end_stdout).abs() < 0.1,
        "the HLS recording ends at {end_hls} s, stdout at {end_stdout} s"
    );
    let stats = last_json(&peer.err_path);
    assert_eq!(stats["http"]["resyncs"], 0, "{stats}");
    assert_eq!(stats["http"]["feed_dropped"], 0, "{stats}");
}

#[test]
fn a_stalled_player_delays_and_costs_no_other() {
    let dir = temp_dir("http-stall");
    let (_, source) = write_source(&dir, 16);
    let (key, id) = key_file(&dir, 42);
    let seed_addr = free_addr();
    let (mut peer, http) = http_peer(&dir, &id, seed_addr);
    let players: Vec<StreamReader> = (0..3)
        .map(|_| StreamReader::start(http, "/stream.ts", None))
        .collect();
    // Reads 1 s, then stops for 10 s, then reads to the end.
    let stalled = StreamReader::start(
        http,
        "/stream.ts",
        Some((Duration::from_secs(1), Duration::from_secs(10))),
    );
    std::thread::sleep(Duration::from_millis(300));
    let _seed = start_seed_at(&dir, &source, &key, &seed_addr.to_string(), &[]);

    let status = peer.wait(Instant::now() + Duration::from_secs(60));
    assert!(status.success(), "peer exited {status}");
    let stdout = peer.output();
    for (i, p) in players.into_iter().enumerate() {
        let (r, gap) = p.finish();
        assert!(r.body == stdout, "player {i} skipped or lost bytes");
        // A player held up behind the stalled one would wait about 10 s. The swarm itself
        // pauses playout up to --latency (1.5 s) for a missing chunk; 3 s leaves room for that
        // on a loaded machine.
        assert!(
            gap < Duration::from_secs(3),
            "player {i} waited {gap:?} for data"
        );
    }
    let (r, _) = stalled.finish();
    assert!(
        !r.body.is_empty() && r.body.len() < stdout.len(),
        "the stalled player got {} of {} bytes",
        r.body.len(),
        stdout.len()
    );
    let stats = last_json(&peer.err_path);
    assert!(stats["http"]["resyncs"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["chunks_dropped_output"], 0, "{stats}");
}

/// One malformed request on its own connection; returns the status line's code (0: closed
/// without an answer).
fn malformed(http: SocketAddr, bytes: &[u8]) -> u16 {
    let Ok(mut sock) = TcpStream::connect(http) else {
        return 0;
    };
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = sock.write_all(bytes);
    // Done sending: the engine answers, then closes instead of keeping the connection alive.
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let mut raw = Vec::new();
    let _ = sock.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Seven kinds of bad request: garbage, a huge header, too many headers, a body, a segment
/// that never was, a bad blocking query, random header bytes.
fn malformed_request(kind: u32, rng: &mut Rng) -> Vec<u8> {
    match kind {
        0 => {
            let n = 1 + rng.below(3000) as usize;
            rng.bytes(n)
        }
        1 => format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000)).into_bytes(),
        2 => format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(100)).into_bytes(),
        3 => b"POST /stream.ts HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
        4 => b"GET /seg/99999999.ts HTTP/1.1\r\n\r\n".to_vec(),
        5 => b"GET /live.m3u8?_HLS_part=2 HTTP/1.1\r\n\r\n".to_vec(),
        _ => {
            // Random bytes may still form valid headers: then the figures answer (200).
            let mut b = b"GET /stats.json HTTP/1.1\r\n".to_vec();
            let n = rng.below(200) as usize;
            b.extend(rng.bytes(n));
            b.extend_from_slice(b"\r\n\r\n");
            b
        }
    }
}

#[test]
fn a_thousand_malformed_requests_leave_the_node_serving() {
    let dir = temp_dir("http-malformed");
    let (_, source) = write_source(&dir, 20);
    let (key, id) = key_file(&dir, 43);
    let seed_addr = free_addr();
    let (mut peer, http) = http_peer(&dir, &id, seed_addr);
    let player = StreamReader::start(http, "/stream.ts", None);
    std::thread::sleep(Duration::from_millis(300));
    let _seed = start_seed_at(&dir, &source, &key, &seed_addr.to_string(), &[]);

    // Slowloris: 20 heads that never finish, one byte a second. Each is cut off with 408.
    let slow: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let mut sock = TcpStream::connect(http).unwrap();
                sock.set_read_timeout(Some(Duration::from_millis(900)))
                    .unwrap();
                let _ = sock.write_all(b"GET / HTTP/1.1\r\nX-Slow: ");
                let mut raw = Vec::new();
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(20) {
                    let mut buf = [0u8; 512];
                    match sock.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                        Err(_) => {}
                    }
                    if sock.write_all(b"a").is_err() {
                        break;
                    }
                }
                String::from_utf8_lossy(&raw).into_owned()
            })
        })
        .collect();

    // Eight clients at once, each its own seeded garbage: 980 requests within a few seconds.
    let senders: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                let seed = 0x5eed_4877 + t;
                println!("garbage seed {seed:#x}");
                let mut rng = Rng::new(seed);
                let mut seen = Vec::new();
                for i in (t as u32..980).step_by(8) {
                    let status = malformed(http, &malformed_request(i % 7, &mut rng));
                    seen.push((i % 7, status));
                }
                seen
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    let mut by_kind = std::collections::BTreeMap::<(u32, u16), u32>::new();
    for s in senders {
        for (kind, status) in s.join().unwrap() {
            *statuses.entry(status).or_default() += 1;
            *by_kind.entry((kind, status)).or_default() += 1;
        }
    }
    println!("statuses: {statuses:?}");
    println!("by kind: {by_kind:?}");
    // Every kind is answered with its status; garbage that happens to stop mid-head
    // (random bytes httparse still reads as a partial head) is closed without one.
    for (kind, code) in [(1, 431), (2, 431), (3, 405), (4, 404), (5, 400)] {
        assert_eq!(
            by_kind.get(&(kind, code)),
            Some(&140),
            "kind {kind}: {by_kind:?}"
        );
    }
    let answered = |kind, code| by_kind.get(&(kind, code)).copied().unwrap_or(0);
    assert!(answered(0, 400) >= 120, "{by_kind:?}");
    assert_eq!(answered(6, 400) + answered(6, 200), 140, "{by_kind:?}");
    for (i, s) in slow.into_iter().enumerate() {
        let answer = s.join().unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "slow client {i} got {answer:?}"
        );
    }
    // Still serving: a playlist now, and the player's stream all along.
    assert_eq!(get(http, "/live.m3u8").status, 200);
    let status = peer.wait(Instant::now() + Duration::from_secs(60));
    assert!(status.success(), "peer exited {status}");
    let (r, _) = player.finish();
    assert!(
        r.body == peer.output(),
        "the player's bytes differ from stdout"
    );
    let stats = last_json(&peer.err_path);
    // Every bad request but the 404s (answered as requests) and the rare valid one.
    assert!(stats["http"]["refused"].as_u64().unwrap() >= 830, "{stats}");
    assert_eq!(stats["http"]["timed_out"], 20, "{stats}");
}

#[test]
fn headless_chromium_plays_the_page() {
    for tool in ["/usr/bin/chromium", "node"] {
        require_command(tool, "apt-get install -y chromium nodejs");
    }
    let dir = temp_dir("http-browser");
    let (_, source) = write_source(&dir, 24);
    let (key, _) = key_file(&dir, 44);
    let seed = start_seed(&dir, &source, &key, &[]);
    let peer = start_peer(&dir, "viewer", &seed.link, &["--http", "127.0.0.1:0"]);
    let http = engine_addr(&peer.err_path);
    let shot = dir.join("page.png");
    let out = std::process::Command::new("node")
        .arg("--experimental-websocket")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/play.mjs"))
        .arg(format!("http://{http}/"))
        .arg("10")
        .arg(&shot)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "play.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    let advanced = v["advanced_s"].as_f64().unwrap();
    // 10 s of wall time: the video must have played most of it (a loaded 2-core machine
    // plays slower than real time, a stalled player not at all).
    assert!(advanced >= 7.0, "currentTime advanced {advanced} s in 10 s");
    let status = &v["last_state"]["blStatus"];
    assert!(status["error"].is_null(), "{status}");
    assert!(
        status["player"].as_str().unwrap().starts_with("hls.js"),
        "{status}"
    );
    assert!(
        status["stats"]["chunks_played"].as_u64().unwrap() > 0,
        "{status}"
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "no screenshot"
    );
}
