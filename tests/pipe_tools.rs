//! bl-chunk and bl-join as a user runs them: real binaries, real ffmpeg output, real pipes.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bl::chunk::Chunk;
use bl::frame::{self, FrameItem};
use bl::identity::{StreamId, StreamKey};
use common::*;

fn chunk_ts(ts: &[u8], key: &std::path::Path) -> Vec<u8> {
    let out = run("bl-chunk", &["--key", key.to_str().unwrap()], ts);
    assert!(out.status.success(), "bl-chunk failed: {}", stderr(&out));
    out.stdout
}

fn parse(stream: &[u8]) -> (StreamId, Vec<Chunk>) {
    let (id, items) = frame::read_all(stream).unwrap();
    let chunks = items
        .into_iter()
        .map(|i| match i {
            FrameItem::Chunk { chunk, .. } => chunk,
            FrameItem::Corrupt { offset, reason } => panic!("corrupt frame at {offset}: {reason}"),
        })
        .collect();
    (id, chunks)
}

fn serialize(id: &StreamId, chunks: &[Chunk]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_header(&mut out, id).unwrap();
    for c in chunks {
        frame::write_chunk(&mut out, c).unwrap();
    }
    out
}

#[test]
fn round_trip_of_committed_sample_is_byte_identical() {
    let dir = temp_dir("rt-sample");
    let (key, id) = key_file(&dir, 1);
    let ts = sample_ts();
    let chunks = chunk_ts(&ts, &key);
    let out = run("bl-join", &["--from-start", "--id", &id], &chunks);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout == ts, "bl-join output differs from the input TS");
    assert_eq!(
        stderr(&out),
        "",
        "a clean, authenticated stream needs no warnings"
    );
}

#[test]
fn round_trip_of_longer_encoder_output_is_byte_identical() {
    let dir = temp_dir("rt-long");
    let (key, id) = key_file(&dir, 1);
    let ts = generated_ts(20);
    let chunks = chunk_ts(&ts, &key);
    let (_, parsed) = parse(&chunks);
    let keyframes = parsed.iter().filter(|c| c.is_keyframe()).count();
    assert!(
        keyframes >= 10,
        "20 s with a 2 s GOP should give ≥ 10 keyframe chunks, got {keyframes}"
    );
    assert!(parsed
        .iter()
        .all(|c| c.payload.len() <= bl::chunk::MAX_PAYLOAD));
    let out = run("bl-join", &["--from-start", "--id", &id], &chunks);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout == ts, "bl-join output differs from the input TS");
}

#[test]
fn default_output_starts_at_a_keyframe_and_decodes() {
    let dir = temp_dir("keyframe-start");
    let (key, id) = key_file(&dir, 1);
    let ts = generated_ts(8);
    let (stream, chunks) = parse(&chunk_ts(&ts, &key));
    // A viewer tuning in mid-GOP: drop the first keyframe chunk and a few after it.
    let first_key = chunks.iter().position(|c| c.is_keyframe()).unwrap();
    let tail = &chunks[first_key + 3..];
    let out = run("bl-join", &["--id", &id], &serialize(&stream, tail));
    assert!(out.status.success(), "{}", stderr(&out));
    let next_key = tail.iter().position(|c| c.is_keyframe()).unwrap();
    let expected: Vec<u8> = tail[next_key..]
        .iter()
        .flat_map(|c| c.payload.clone())
        .collect();
    assert!(
        out.stdout == expected,
        "output must be the source from the next keyframe chunk on"
    );
    assert!(ts.ends_with(&expected));
    let path = dir.join("tail.ts");
    std::fs::write(&path, &out.stdout).unwrap();
    let (errors, first_is_key) = ffprobe_decode(&path);
    assert_eq!(errors, "", "ffprobe reported decode errors");
    assert_eq!(
        first_is_key,
        Some(true),
        "first decoded video frame must be a keyframe"
    );
}

#[test]
fn garbage_between_packets_is_skipped_and_counted() {
    let dir = temp_dir("garbage");
    let (key, id) = key_file(&dir, 1);
    let ts = sample_ts();
    let mut rng = Rng::new(0x6172_6261_6765);
    let mut dirty = rng.bytes(1000);
    let mut garbage_total = 1000;
    for (i, packet) in ts.chunks(188).enumerate() {
        dirty.extend_from_slice(packet);
        if i % 97 == 50 {
            let n = 1 + rng.below(400) as usize;
            dirty.extend(rng.bytes(n));
            garbage_total += n;
        }
    }
    let tail = rng.bytes(333);
    dirty.extend(&tail);
    dirty.extend_from_slice(&ts[..100]); // a truncated last packet
    garbage_total += 333 + 100;
    let chunked = run("bl-chunk", &["--key", key.to_str().unwrap()], &dirty);
    assert!(chunked.status.success());
    let err = stderr(&chunked);
    assert!(
        err.contains(&format!(
            "{garbage_total} bytes of garbage skipped in total"
        )),
        "stderr should count {garbage_total} skipped bytes: {err}"
    );
    let out = run("bl-join", &["--from-start", "--id", &id], &chunked.stdout);
    assert!(out.stdout == ts, "output must equal the clean packets");
}

#[test]
fn forged_corrupt_and_replayed_chunks_are_dropped_and_reported() {
    let dir = temp_dir("forgery");
    let (key, id) = key_file(&dir, 1);
    let ts = sample_ts();
    let (stream, chunks) = parse(&chunk_ts(&ts, &key));
    assert!(chunks.len() > 30);
    let mut hostile = chunks.clone();
    hostile[5].payload[100] ^= 0x01; // one payload byte flipped
    let other = StreamKey::from_seed([99; 32]);
    let victim = &chunks[10];
    hostile[10] = Chunk::sign(
        &other,
        victim.seq,
        victim.capture_us,
        victim.flags,
        victim.payload.clone(),
    );
    hostile.insert(21, chunks[3].clone()); // seq 3 replayed later
    let out = run(
        "bl-join",
        &["--from-start", "--id", &id],
        &serialize(&stream, &hostile),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let expected: Vec<u8> = chunks
        .iter()
        .filter(|c| c.seq != 5 && c.seq != 10)
        .flat_map(|c| c.payload.clone())
        .collect();
    assert!(
        out.stdout == expected,
        "forged chunks must not be output, the rest must be intact"
    );
    let err = stderr(&out);
    assert!(err.contains("dropped chunk seq 5 at byte"), "{err}");
    assert!(err.contains("dropped chunk seq 10 at byte"), "{err}");
    assert!(err.contains("dropped replayed chunk seq 3"), "{err}");
    assert!(
        err.contains("dropped 2 forged, 0 corrupt, 1 replayed"),
        "{err}"
    );
}

#[test]
fn chunk_stream_from_another_key_is_refused_with_id() {
    let dir = temp_dir("wrong-id");
    let (key, _) = key_file(&dir, 1);
    let (_, other_id) = key_file(&dir, 2);
    let out = run(
        "bl-join",
        &["--id", &other_id],
        &chunk_ts(&sample_ts(), &key),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not the expected --id"), "{err}");
}

#[test]
fn two_half_inputs_merge_into_the_full_stream() {
    let dir = temp_dir("two-inputs");
    let (key, id) = key_file(&dir, 1);
    let ts = generated_ts(8);
    let (stream, chunks) = parse(&chunk_ts(&ts, &key));
    let (even, odd): (Vec<Chunk>, Vec<Chunk>) = chunks.into_iter().partition(|c| c.seq % 2 == 0);
    let a = dir.join("a.chunks");
    let b = dir.join("b.chunks");
    std::fs::write(&a, serialize(&stream, &even)).unwrap();
    std::fs::write(&b, serialize(&stream, &odd)).unwrap();
    let out = run(
        "bl-join",
        &[
            "--from-start",
            "--id",
            &id,
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout == ts, "merged output must be the whole stream");
}

#[test]
fn inputs_of_different_streams_are_an_error() {
    let dir = temp_dir("two-streams");
    let (k1, _) = key_file(&dir, 1);
    let (k2, _) = key_file(&dir, 2);
    let a = dir.join("a.chunks");
    let b = dir.join("b.chunks");
    std::fs::write(&a, chunk_ts(&sample_ts(), &k1)).unwrap();
    std::fs::write(&b, chunk_ts(&sample_ts(), &k2)).unwrap();
    let out = run(
        "bl-join",
        &["-q", a.to_str().unwrap(), b.to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("inputs of different streams cannot be merged"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn closed_stdout_ends_quietly_with_status_zero() {
    let dir = temp_dir("head");
    let (key, _) = key_file(&dir, 1);
    let big: Vec<u8> = sample_ts().repeat(100); // ~10 MB
    let big_path = dir.join("big.ts");
    std::fs::write(&big_path, &big).unwrap();
    let chunks_path = dir.join("big.chunks");
    std::fs::write(&chunks_path, chunk_ts(&big, &key)).unwrap();
    for (tool, args, input) in [
        ("bl-chunk", vec!["--key", key.to_str().unwrap()], &big_path),
        ("bl-join", vec!["--from-start", "-q"], &chunks_path),
    ] {
        // Like `tool < file | head -c 1000`: read 1000 bytes, then close the pipe.
        let mut child = Command::new(bin(tool))
            .args(&args)
            .stdin(std::fs::File::open(input).unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut head = [0u8; 1000];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{tool} | head must exit 0");
        assert_eq!(
            stderr(&out),
            "",
            "{tool} | head must print nothing on stderr"
        );
    }
}

#[test]
fn sigint_and_sigterm_give_130_and_143() {
    let dir = temp_dir("signals");
    let (key, _) = key_file(&dir, 1);
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let mut child = Command::new(bin("bl-chunk"))
            .args(["--key", key.to_str().unwrap()])
            .stdin(Stdio::piped()) // held open: a live input that never ends
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the header, so the signal handler is surely installed.
        let mut header = [0u8; frame::HEADER_LEN];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut header)
            .unwrap();
        let exit = exit_after_signal(&mut child, signal);
        assert_eq!(exit.code(), Some(code), "SIG{signal}");
    }
}

/// An encoder still starting: bl-chunk says after 2 s what it waits for.
#[test]
fn bl_chunk_without_input_says_it_waits_for_mpeg_ts() {
    let dir = temp_dir("chunk-wait");
    let (key, _) = key_file(&dir, 1);
    assert_eq!(
        first_stderr_line_without_input("bl-chunk", &["--key", key.to_str().unwrap()]),
        "bl-chunk: waiting for MPEG-TS on standard input"
    );
}

/// A FIFO nobody writes to: bl-join says what it waits for, and SIGINT and SIGTERM still
/// stop it (it sat in open() through both until a writer came).
#[test]
fn bl_join_waiting_on_a_fifo_says_so_and_stops_on_a_signal() {
    let dir = temp_dir("fifo");
    let fifo = dir.join("feed");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let mut child = Command::new(bin("bl-join"))
            .arg(&fifo)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The line comes after 2 s; the signal handler is installed before it.
        let err = child.stderr.take().unwrap();
        let line = first_line_within(err, Duration::from_secs(30)).unwrap_or_default();
        assert_eq!(
            line.trim_end(),
            format!("bl-join: waiting for input on {}", fifo.display())
        );
        let exit = exit_after_signal(&mut child, signal);
        assert_eq!(exit.code(), Some(code), "SIG{signal}");
    }
}

#[test]
fn bad_arguments_give_one_line_and_nothing_on_stdout() {
    let dir = temp_dir("bad-args");
    let readable = dir.join("readable.key");
    let (good, _) = key_file(&dir, 1);
    std::fs::copy(&good, &readable).unwrap();
    std::fs::set_permissions(
        &readable,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let malformed = dir.join("malformed.key");
    std::fs::write(&malformed, "hello\n").unwrap();
    std::fs::set_permissions(
        &malformed,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let cases: Vec<(&str, Vec<&str>, i32, &str)> = vec![
        ("bl-chunk", vec!["--bogus"], 2, "unexpected argument"),
        (
            "bl-chunk",
            vec!["--chunk-bytes", "5"],
            2,
            "outside 188..=1128",
        ),
        (
            "bl-chunk",
            vec!["--key", readable.to_str().unwrap()],
            1,
            "readable by others",
        ),
        (
            "bl-chunk",
            vec!["--key", malformed.to_str().unwrap()],
            1,
            "is malformed",
        ),
        (
            "bl-chunk",
            vec!["--key", dir.to_str().unwrap()],
            1,
            "is a directory",
        ),
        (
            "bl-chunk",
            vec!["--key", "/nonexistent-dir/k"],
            1,
            "cannot create key",
        ),
        (
            "bl-join",
            vec!["--id", "not-an-id"],
            2,
            "malformed stream id",
        ),
        (
            "bl-join",
            vec!["/nonexistent.chunks"],
            1,
            "cannot open /nonexistent.chunks",
        ),
    ];
    for (tool, args, code, needle) in cases {
        let out = run(tool, &args, &sample_ts());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{tool} {args:?}: {err}");
        assert!(out.stdout.is_empty(), "{tool} {args:?} wrote to stdout");
        assert_eq!(
            err.lines().count(),
            1,
            "{tool} {args:?}: one line expected: {err}"
        );
        assert!(
            err.starts_with(&format!("{tool}: ")) && err.contains(needle),
            "{tool} {args:?}: {err}"
        );
    }
    // Raw TS fed to bl-join instead of a chunk stream.
    let out = run("bl-join", &[], &sample_ts());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a bl chunk stream"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn new_key_is_private_and_its_id_is_printed() {
    let dir = temp_dir("new-key");
    let path = dir.join("stream.key");
    let out = run("bl-chunk", &["--key", path.to_str().unwrap()], &sample_ts());
    assert!(out.status.success());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let id = run(
        "bl-chunk",
        &["--key", path.to_str().unwrap(), "--show-id"],
        b"",
    );
    let id = String::from_utf8(id.stdout).unwrap();
    assert!(
        stderr(&out).contains(id.trim()),
        "stream id must be on stderr when the key is made"
    );
    let (stream, _) = parse(&out.stdout);
    assert_eq!(stream.to_string(), id.trim());
}

/// An encoder writes a frame, then waits for the next. What it wrote must come out of
/// bl-chunk during the pause, last packet included, not when the next frame comes (the
/// last packet of every write used to wait for the byte after it: 50–170 ms with ffmpeg -re).
#[test]
fn a_write_followed_by_a_pause_comes_out_whole_during_the_pause() {
    use std::io::Write;
    let dir = temp_dir("pause");
    let (key, _) = key_file(&dir, 1);
    let ts = sample_ts();
    let mut child = Command::new(bin("bl-chunk"))
        .args(["--key", key.to_str().unwrap(), "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = stdout;
        let mut buf = [0u8; 65536];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut out = Vec::new();
    // Writes of 1, 7 and 100 packets, each followed by a pause: all of it comes out.
    let mut sent = 0;
    for packets in [50, 1, 7, 100] {
        let piece = &ts[sent * 188..(sent + packets) * 188];
        stdin.write_all(piece).unwrap();
        stdin.flush().unwrap();
        sent += packets;
        let last = &ts[(sent - 1) * 188..sent * 188];
        let deadline = Instant::now() + Duration::from_secs(5);
        while !out.windows(188).any(|w| w == last) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(bytes) => out.extend(bytes),
                Err(_) => panic!("packet {} stayed in bl-chunk during the pause", sent - 1),
            }
        }
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
