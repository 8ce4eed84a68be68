//! One HTTP/1.x request head, parsed with httparse, and the routes an engine answers.
//!
//! httparse is the parser under hyper: zero-copy, no allocation, fuzzed for years. The engine
//! needs only GET and HEAD without bodies, so anything with a body is refused.

/// Longest request head accepted (request line and headers). Players send a few hundred
/// bytes; 8 KiB is what nginx allows by default for one header buffer.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most headers accepted in one request.
pub const MAX_HEADERS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Page,
    /// Browsers ask for it: answered with no content rather than a 404 in their console.
    Favicon,
    Script,
    Licence,
    Stats,
    Stream,
    Playlist {
        /// `_HLS_msn` and `_HLS_part`: answer once this part (or segment) exists.
        block: Option<(u64, Option<usize>)>,
    },
    Segment(u64),
    Part(u64, usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub route: Route,
    /// HEAD: the same headers, no body.
    pub head_only: bool,
    /// HTTP/1.0 (no chunked encoding) or `Connection: close`.
    pub close: bool,
    pub http10: bool,
}

/// Why a request is refused, with the status it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeadTooLarge,
}

impl Refusal {
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::BadRequest => (400, "Bad Request"),
            Refusal::NotFound => (404, "Not Found"),
            Refusal::MethodNotAllowed => (405, "Method Not Allowed"),
            Refusal::HeadTooLarge => (431, "Request Header Fields Too Large"),
        }
    }
}

/// What the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet.
    Partial,
    /// A request, and how many bytes its head took.
    Done(Request, usize),
    /// Refused; the connection closes after the answer.
    Refused(Refusal),
    /// A well-formed request for nothing we serve: answered, and the connection goes on
    /// (with the next pipelined request) unless the client asked to close.
    Unroutable {
        why: Refusal,
        len: usize,
        close: bool,
    },
}

pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Parsed::Refused(Refusal::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Refused(Refusal::HeadTooLarge),
        Err(_) => return Parsed::Refused(Refusal::BadRequest),
    };
    if len > MAX_HEAD_BYTES {
        return Parsed::Refused(Refusal::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Refused(Refusal::BadRequest);
    };
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Parsed::Refused(Refusal::MethodNotAllowed),
    };
    let mut close = version == 0;
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
        if h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && value.trim() != "0")
        {
            // No route takes a body, and skipping one safely would mean parsing it.
            return Parsed::Refused(Refusal::BadRequest);
        }
        if h.name.eq_ignore_ascii_case("connection") {
            if value.contains("close") {
                close = true;
            } else if value.contains("keep-alive") {
                close = false;
            }
        }
    }
    match route(target) {
        Ok(route) => Parsed::Done(
            Request {
                route,
                head_only,
                close,
                http10: version == 0,
            },
            len,
        ),
        Err(why) => Parsed::Unroutable { why, len, close },
    }
}

fn route(target: &str) -> Result<Route, Refusal> {
    // The absolute form (`GET http://host:port/path`), which servers must accept.
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/"),
        None => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(match path {
        "/favicon.ico" => Route::Favicon,
        "/" | "/index.html" => Route::Page,
        "/hls.js" => Route::Script,
        "/hls.js.LICENSE" => Route::Licence,
        "/stats.json" => Route::Stats,
        "/stream.ts" => Route::Stream,
        "/live.m3u8" => Route::Playlist {
            block: blocking_query(query)?,
        },
        _ => {
            let name = path
                .strip_prefix("/seg/")
                .and_then(|n| n.strip_suffix(".ts"))
                .ok_or(Refusal::NotFound)?;
            match name.split_once('.') {
                None => Route::Segment(number(name)?),
                Some((msn, part)) => Route::Part(number(msn)?, number(part)? as usize),
            }
        }
    })
}

/// `_HLS_msn=M[&_HLS_part=P]`; other parameters are ignored, a part without a msn is an error
/// (the LL-HLS rules).
fn blocking_query(query: &str) -> Result<Option<(u64, Option<usize>)>, Refusal> {
    let mut msn = None;
    let mut part = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("_HLS_msn", v)) => msn = Some(number(v).map_err(|_| Refusal::BadRequest)?),
            Some(("_HLS_part", v)) => {
                part = Some(number(v).map_err(|_| Refusal::BadRequest)? as usize)
            }
            _ => {}
        }
    }
    match (msn, part) {
        (None, Some(_)) => Err(Refusal::BadRequest),
        (None, None) => Ok(None),
        (Some(m), p) => Ok(Some((m, p))),
    }
}

/// A decimal number that fits in 32 bits (msn and part indexes stay far below).
fn number(text: &str) -> Result<u64, Refusal> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::NotFound);
    }
    text.parse::<u64>().map_err(|_| Refusal::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(text: &str) -> Request {
        match parse(text.as_bytes()) {
            Parsed::Done(r, n) => {
                assert_eq!(n, text.len());
                r
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn routes_and_blocking_reloads() {
        let r = done("GET /stream.ts HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.route, Route::Stream);
        assert!(!r.close && !r.head_only && !r.http10);
        let r = done("HEAD /live.m3u8?_HLS_msn=12&_HLS_part=3 HTTP/1.1\r\n\r\n");
        assert_eq!(
            r.route,
            Route::Playlist {
                block: Some((12, Some(3)))
            }
        );
        assert!(r.head_only);
        assert_eq!(
            done("GET /seg/7.2.ts HTTP/1.0\r\n\r\n").route,
            Route::Part(7, 2)
        );
        assert!(done("GET /seg/7.ts HTTP/1.0\r\n\r\n").close);
        assert!(done("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").close);
    }

    #[test]
    fn refusals_carry_their_status() {
        let cases: &[(&str, u16)] = &[
            ("POST / HTTP/1.1\r\n\r\n", 405),
            ("GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 400),
            ("\x16\x03\x01garbage\r\n\r\n", 400),
        ];
        for (text, status) in cases {
            match parse(text.as_bytes()) {
                Parsed::Refused(r) => assert_eq!(r.status().0, *status, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        for (text, status) in [
            ("GET /nope HTTP/1.1\r\n\r\n", 404),
            ("GET /seg/x.ts HTTP/1.1\r\n\r\n", 404),
            ("GET /seg/99999999999.ts HTTP/1.1\r\n\r\n", 404),
            ("GET /live.m3u8?_HLS_part=1 HTTP/1.1\r\n\r\n", 400),
        ] {
            match parse(text.as_bytes()) {
                Parsed::Unroutable { why, len, close } => {
                    assert_eq!((why.status().0, len, close), (status, text.len(), false))
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(matches!(
            parse(b"GET /nope HTTP/1.0\r\n\r\n"),
            Parsed::Unroutable { close: true, .. }
        ));
        assert_eq!(
            done("GET http://127.0.0.1:8080/live.m3u8 HTTP/1.1\r\n\r\n").route,
            Route::Playlist { block: None }
        );
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(40));
        assert_eq!(
            parse(many.as_bytes()),
            Parsed::Refused(Refusal::HeadTooLarge)
        );
        let huge = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(
            parse(huge.as_bytes()),
            Parsed::Refused(Refusal::HeadTooLarge)
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost"), Parsed::Partial);
    }
}
