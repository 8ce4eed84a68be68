//! A map keyed by socket address with hashed lookups and iteration in address order.
//!
//! A node looks its neighbours up on every datagram; in a B-tree that lookup was the
//! simulator's largest single cost (12 % at 10,000 peers: a walk through cold nodes). Iteration
//! stays in address order, so behaviour does not depend on a hasher: the same seed gives the
//! same run as with an ordered map. The hasher is fixed (no OS randomness in the core);
//! flooding is not a concern because entries exist only for handshaken, capped neighbours.

use std::net::SocketAddr;

use rustc_hash::FxHashMap;

#[derive(Debug)]
pub struct AddrMap<V> {
    values: FxHashMap<SocketAddr, V>,
    /// Every key, sorted: the iteration order.
    order: Vec<SocketAddr>,
}

impl<V> Default for AddrMap<V> {
    fn default() -> Self {
        AddrMap {
            values: FxHashMap::default(),
            order: Vec::new(),
        }
    }
}

impl<V> AddrMap<V> {
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn contains_key(&self, addr: &SocketAddr) -> bool {
        self.values.contains_key(addr)
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&V> {
        self.values.get(addr)
    }

    pub fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut V> {
        self.values.get_mut(addr)
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, addr: SocketAddr, value: V) -> Option<V> {
        let old = self.values.insert(addr, value);
        if old.is_none() {
            if let Err(at) = self.order.binary_search(&addr) {
                self.order.insert(at, addr);
            }
        }
        old
    }

    pub fn remove(&mut self, addr: &SocketAddr) -> Option<V> {
        let old = self.values.remove(addr)?;
        if let Ok(at) = self.order.binary_search(addr) {
            self.order.remove(at);
        }
        Some(old)
    }

    pub fn clear(&mut self) {
        self.values.clear();
        self.order.clear();
    }

    /// Keys in address order.
    pub fn keys(&self) -> impl Iterator<Item = &SocketAddr> + '_ {
        self.order.iter()
    }

    /// Values in address order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// Entries in address order.
    pub fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &V)> + '_ {
        self.order
            .iter()
            .filter_map(|addr| self.values.get(addr).map(|v| (addr, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn iterates_like_an_ordered_map_through_inserts_and_removals() {
        let mut map = AddrMap::default();
        let mut reference = BTreeMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..2000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let addr =
                SocketAddr::from(([127, 0, (x >> 8) as u8 % 4, x as u8], (x >> 16) as u16 % 8));
            if x % 3 == 0 {
                assert_eq!(map.remove(&addr), reference.remove(&addr), "step {step}");
            } else {
                assert_eq!(
                    map.insert(addr, step),
                    reference.insert(addr, step),
                    "step {step}"
                );
            }
            assert_eq!(map.len(), reference.len());
        }
        let ours: Vec<(SocketAddr, u32)> = map.iter().map(|(a, v)| (*a, *v)).collect();
        let theirs: Vec<(SocketAddr, u32)> = reference.iter().map(|(a, v)| (*a, *v)).collect();
        assert_eq!(ours, theirs);
        assert!(map.keys().eq(reference.keys()));
        if let Some((first, _)) = theirs.first() {
            *map.get_mut(first).unwrap() = 7;
            assert_eq!(map.get(first), Some(&7));
        }
        map.clear();
        assert!(map.is_empty() && map.iter().next().is_none());
    }
}
