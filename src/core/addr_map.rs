//! A map keyed by socket address with hashed lookups and iteration in address order.
//!
//! A node looks its neighbours up on every datagram; in a B-tree that lookup was the
//! simulator's largest single cost (12 % at 10,000 peers: a walk through cold nodes). Iteration
//! stays in address order, so behaviour does not depend on a hasher: the same seed gives the
//! same run as with an ordered map. The hasher is fixed (no OS randomness in the core);
//! flooding is not a concern because entries exist only for handshaken, capped neighbours.
//!
//! Entries sit in one vector sorted by address, and the hash maps an address to its place.
//! Iterating is then a walk through contiguous memory: with the values in the hash and a
//! lookup per key, the median of neighbours' Haves (taken on every Have) was 11 % of
//! bl-sim's time. Inserts and removals shift the vector and renumber the places after them,
//! which is cheap at the few dozen neighbours a node keeps and rare beside lookups.

use std::net::SocketAddr;

use rustc_hash::FxHashMap;

#[derive(Debug)]
pub struct AddrMap<V> {
    /// Each key's place in `entries`.
    places: FxHashMap<SocketAddr, usize>,
    /// Every entry, sorted by address: the iteration order.
    entries: Vec<(SocketAddr, V)>,
}

impl<V> Default for AddrMap<V> {
    fn default() -> Self {
        AddrMap {
            places: FxHashMap::default(),
            entries: Vec::new(),
        }
    }
}

impl<V> AddrMap<V> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains_key(&self, addr: &SocketAddr) -> bool {
        self.places.contains_key(addr)
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&V> {
        let at = *self.places.get(addr)?;
        self.entries.get(at).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut V> {
        let at = *self.places.get(addr)?;
        self.entries.get_mut(at).map(|(_, v)| v)
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, addr: SocketAddr, value: V) -> Option<V> {
        if let Some(old) = self.get_mut(&addr) {
            return Some(std::mem::replace(old, value));
        }
        let at = self.entries.partition_point(|(a, _)| *a < addr);
        self.entries.insert(at, (addr, value));
        self.renumber_from(at);
        None
    }

    pub fn remove(&mut self, addr: &SocketAddr) -> Option<V> {
        let at = self.places.remove(addr)?;
        if at >= self.entries.len() {
            return None;
        }
        let (_, old) = self.entries.remove(at);
        self.renumber_from(at);
        // Give back the room a crowd of neighbours left (joins greet many; 240 bytes each).
        let len = self.entries.len();
        if self.entries.capacity() > 2 * len + 8 {
            self.entries.shrink_to(len + 4);
            self.places.shrink_to(len + 4);
        }
        Some(old)
    }

    pub fn clear(&mut self) {
        self.places.clear();
        self.entries.clear();
    }

    /// Keys in address order.
    pub fn keys(&self) -> impl Iterator<Item = &SocketAddr> + '_ {
        self.entries.iter().map(|(a, _)| a)
    }

    /// Values in address order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Entries in address order, values to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&SocketAddr, &mut V)> + '_ {
        self.entries.iter_mut().map(|(a, v)| (&*a, v))
    }

    /// Values in address order, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Entries in address order.
    pub fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &V)> + '_ {
        self.entries.iter().map(|(a, v)| (a, v))
    }

    /// The places of the entries from `at` on moved: records them.
    fn renumber_from(&mut self, at: usize) {
        for (i, (addr, _)) in self.entries.iter().enumerate().skip(at) {
            self.places.insert(*addr, i);
        }
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
            assert_eq!(map.get(&addr), reference.get(&addr), "step {step}");
        }
        for (addr, value) in &reference {
            assert_eq!(map.get(addr), Some(value));
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

    #[test]
    fn a_crowd_that_left_gives_its_room_back() {
        let mut map = AddrMap::default();
        let addr = |i: u16| SocketAddr::from(([10, 0, 0, 1], i));
        for i in 0..100 {
            map.insert(addr(i), [0u8; 200]);
        }
        for i in 4..100 {
            map.remove(&addr(i));
        }
        assert_eq!(
            map.keys().copied().collect::<Vec<_>>(),
            (0..4).map(addr).collect::<Vec<_>>()
        );
        assert!(map.entries.capacity() <= 16, "{}", map.entries.capacity());
        assert_eq!(map.get(&addr(3)), Some(&[0u8; 200]));
    }
}
