//! Helpers shared by the integration tests: the real binaries, real files, real ffmpeg.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub fn bin(name: &str) -> PathBuf {
    match name {
        "bl-chunk" => PathBuf::from(env!("CARGO_BIN_EXE_bl-chunk")),
        "bl-join" => PathBuf::from(env!("CARGO_BIN_EXE_bl-join")),
        "bl-seed" => PathBuf::from(env!("CARGO_BIN_EXE_bl-seed")),
        "bl-peer" => PathBuf::from(env!("CARGO_BIN_EXE_bl-peer")),
        "bl-stat" => PathBuf::from(env!("CARGO_BIN_EXE_bl-stat")),
        "bl-sim" => PathBuf::from(env!("CARGO_BIN_EXE_bl-sim")),
        other => panic!("unknown binary {other}"),
    }
}

/// A fresh directory under target/ for one test's files.
pub fn temp_dir(test: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{test}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a binary with `stdin` bytes; returns its output.
pub fn run(name: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The committed 3 s H.264 + AAC fixture made by ffmpeg (see tests/data/README.md).
pub fn sample_ts() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sample.ts")).unwrap()
}

/// Fails loudly when ffmpeg/ffprobe are missing: CI installs them, and a silently skipped
/// test would prove nothing.
pub fn require_tool(tool: &str) {
    let ok = Command::new(tool)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{tool} not found: install ffmpeg (apt-get install -y ffmpeg); .ci/run does this"
    );
}

/// Encodes `seconds` of H.264 + AAC test signal as MPEG-TS with ffmpeg (cached per length).
pub fn generated_ts(seconds: u32) -> Vec<u8> {
    require_tool("ffmpeg");
    // Tests run on several threads: one encodes, the others wait for its file.
    static ENCODING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ENCODING.lock().unwrap_or_else(|e| e.into_inner());
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("generated-{seconds}s.ts"));
    if let Ok(bytes) = std::fs::read(&path) {
        if !bytes.is_empty() {
            return bytes;
        }
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "60",
            "-b:v",
            "1500k",
        ])
        .args(["-c:a", "aac", "-b:a", "96k", "-f", "mpegts"])
        .arg(&tmp)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg failed to make the test stream");
    std::fs::rename(&tmp, &path).unwrap();
    std::fs::read(&path).unwrap()
}

/// ffprobe's error output when decoding every frame of `ts` (empty when it decodes cleanly),
/// and the key_frame flag of the first video frame.
pub fn ffprobe_decode(ts: &Path) -> (String, Option<bool>) {
    require_tool("ffprobe");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=key_frame",
            "-of",
            "csv=p=0",
        ])
        .arg(ts)
        .output()
        .unwrap();
    let first_key = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().starts_with('1'));
    (String::from_utf8_lossy(&out.stderr).into_owned(), first_key)
}

/// Fails loudly when a command the test runs is not installed (CI installs it; a silently
/// skipped test would prove nothing). `install` says how to get it.
pub fn require_command(command: &str, install: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{command} not found: {install} (.ci/run does)");
}

/// A small deterministic PRNG (xorshift64*) so garbage and choices are reproducible by seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        eprintln!("rng seed={seed}");
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A key file with mode 0600, and its stream id. The key is this test's own: `seed` and the
/// test process's id and call count make it. Tests run two at a time, and with one key for
/// all, a swarm could meet another test's: a killed peer's port, reused by the other test's
/// peer, still stood in its neighbours' lists, the two swarms merged, and a viewer played
/// the other stream's chunk at one seq (both signed by the same key; two copies of
/// tests/swarm.rs's churn test at once, 2 runs of 24).
pub fn key_file(dir: &Path, seed: u8) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let mut bytes = [seed; 32];
    bytes[..4].copy_from_slice(&std::process::id().to_le_bytes());
    bytes[4..8].copy_from_slice(&CALLS.fetch_add(1, Ordering::SeqCst).to_le_bytes());
    let key = bl::identity::StreamKey::from_seed(bytes);
    let path = dir.join(format!("key{seed}"));
    let out = Command::new(bin("bl-chunk"))
        .arg("--key")
        .arg(&path)
        .arg("--show-id")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Overwrite the fresh random key with ours.
    let text = format!(
        "bl-secret-key-v1:{}\n",
        data_encoding::BASE32_NOPAD
            .encode(key.signing_key().as_bytes())
            .to_ascii_lowercase()
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path, key.id().to_string())
}
pub mod http;
pub mod swarm;

/// The first line `reader` gives within `within`, read on a helper thread so that a tool that
/// never writes fails the test instead of hanging it.
pub fn first_line_within(
    reader: impl std::io::Read + Send + 'static,
    within: std::time::Duration,
) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(reader);
        if std::io::BufRead::read_line(&mut reader, &mut line).is_ok() {
            let _ = tx.send(line);
        }
    });
    rx.recv_timeout(within).ok()
}

/// The first line `tool` writes on stderr (within 30 s) while its stdin is held open and empty;
/// then it is killed.
pub fn first_stderr_line_without_input(tool: &str, args: &[&str]) -> String {
    let mut child = Command::new(bin(tool))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let line = first_line_within(err, std::time::Duration::from_secs(30)).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    line.trim_end().to_string()
}

/// Sends SIG`signal` (INT, TERM) to `child` and returns how it exited (within 10 s).
pub fn exit_after_signal(
    child: &mut std::process::Child,
    signal: &str,
) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIG{signal}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The first `n` lines `reader` gives within `within` (fewer if it ends or the time runs out).
pub fn lines_within(
    reader: impl std::io::Read + Send + 'static,
    n: usize,
    within: std::time::Duration,
) -> Vec<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(reader);
        for line in std::io::BufRead::lines(reader).map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + within;
    let mut lines = Vec::new();
    while lines.len() < n {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    lines
}
