//! The I/O layer around the core: the mio driver (UDP socket, stdin, stdout, signals), the
//! stdin reader thread, and the stats probe bl-stat uses.

pub mod driver;
pub mod input;
pub mod probe;
pub mod wake_lag;
