//! A small HTTP/1.1 client for the tests, on a plain TcpStream: requests exactly as written,
//! chunked bodies decoded, arrival times kept.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The engine's address from a node's stderr ("serving players on http://ADDR/ …").
pub fn engine_addr(err_path: &Path) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(err_path).unwrap_or_default();
        if let Some(rest) = text.split("serving players on http://").nth(1) {
            let addr = rest.split('/').next().unwrap();
            return addr.parse().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no HTTP address in {}: {text}",
            err_path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET `path` with `Connection: close` and read the whole response.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = sock.read_to_end(&mut raw);
    parse(&raw)
}

/// Splits a raw response and decodes a chunked body.
pub fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut r = Response {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    };
    if r.header("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        r.body = dechunk(&r.body);
    }
    r
}

/// Decodes chunked transfer encoding up to the last complete chunk.
pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {:?}", &data[..eol]));
        if size == 0 || data.len() < eol + 2 + size + 2 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        assert_eq!(
            &data[eol + 2 + size..eol + 4 + size],
            b"\r\n",
            "chunk not closed"
        );
        data = &data[eol + 4 + size..];
    }
    out
}

/// A `/stream.ts` reader on its own thread: the body (decoded) and the largest gap between
/// two reads once the first byte came.
pub struct StreamReader {
    handle: std::thread::JoinHandle<(Response, Duration)>,
}

impl StreamReader {
    /// Connects now (so the caller knows the request was sent) and reads until the end.
    pub fn start(addr: SocketAddr, path: &str, stall: Option<(Duration, Duration)>) -> Self {
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(sock, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let handle = std::thread::spawn(move || {
            let mut raw = Vec::new();
            let mut buf = [0u8; 16384];
            let mut last: Option<Instant> = None;
            let mut gap = Duration::ZERO;
            let started = Instant::now();
            let mut stalled = false;
            loop {
                if let Some((after, length)) = stall {
                    if !stalled && started.elapsed() >= after {
                        stalled = true;
                        std::thread::sleep(length);
                        last = None;
                    }
                }
                match sock.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        raw.extend_from_slice(&buf[..n]);
                        let now = Instant::now();
                        if let Some(l) = last {
                            gap = gap.max(now - l);
                        }
                        last = Some(now);
                    }
                }
            }
            (parse(&raw), gap)
        });
        StreamReader { handle }
    }

    pub fn finish(self) -> (Response, Duration) {
        self.handle.join().unwrap()
    }
}
