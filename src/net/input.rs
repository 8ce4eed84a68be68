//! Reading stdin or files on helper threads that feed an event loop.
//!
//! epoll (and so mio) refuses regular files, and putting a shared stdin pipe into non-blocking
//! mode would change it for every other process holding it. A plain blocking reader thread
//! works for pipes, FIFOs, terminals and files alike; it hands blocks to the loop over a
//! channel and, optionally, wakes a mio `Waker`.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use anyhow::{Context, Result};

/// Block size for reads: large enough for files, returns early on pipes.
pub const READ_BLOCK: usize = 64 * 1024;

/// What a byte-reader thread reports.
#[derive(Debug)]
pub enum ByteEvent {
    Data(Vec<u8>),
    End,
    Failed(io::Error),
}

/// Opens `-` as stdin, anything else as a file (which may be a FIFO).
pub fn open(path: &Path) -> Result<Box<dyn Read + Send>> {
    if path.as_os_str() == "-" {
        Ok(Box::new(io::stdin()))
    } else {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Box::new(file))
    }
}

/// Spawns a thread that reads `input` in blocks and calls `deliver` with each event. It stops
/// after `End` or `Failed`, or when `deliver` returns false (the loop is gone).
pub fn spawn_byte_reader(
    name: &str,
    mut input: Box<dyn Read + Send>,
    mut deliver: impl FnMut(ByteEvent) -> bool + Send + 'static,
) -> Result<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || loop {
            let mut block = vec![0u8; READ_BLOCK];
            let event = match input.read(&mut block) {
                Ok(0) => ByteEvent::End,
                Ok(n) => {
                    block.truncate(n);
                    ByteEvent::Data(block)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => ByteEvent::Failed(e),
            };
            let last = !matches!(event, ByteEvent::Data(_));
            if !deliver(event) || last {
                return;
            }
        })
        .context("cannot start reader thread")?;
    Ok(())
}
