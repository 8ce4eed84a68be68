//! The simulator's event queue: a calendar of time buckets.
//!
//! Nearly every event falls within a few seconds of now, so buckets live in a ring indexed by
//! bucket number; the rare later ones wait in an ordered map until the ring reaches them.
//! Events of one bucket come out in the order they were pushed, which is what makes a run
//! reproducible without sorting.
//!
//! Each bucket is a linked list through one slab of items rather than a vector of its own.
//! Bucket vectors each kept the capacity of the busiest bucket they had served (reused from a
//! pool of spares) or doubled past their items: at 2,000 peers they held 6 times the events in
//! flight, 24 KB a peer, the largest part of the simulator's heap (massif). The slab holds what
//! is in flight at the peak, once.

use std::collections::BTreeMap;

/// The end of a list.
const NIL: u32 = u32::MAX;

/// Emptied output vectors kept for reuse: one per calendar taken from at a time covers it.
const MAX_SPARE: usize = 4;

/// A bucket: the first and last of its items in the slab. Not `Copy`: draining a stale copy
/// would free its entries twice.
#[derive(Clone)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };

    fn is_empty(&self) -> bool {
        self.head == NIL
    }
}

/// A slab entry: an item queued (or none, on the free list) and the next entry of its list.
struct Entry<T> {
    item: Option<T>,
    next: u32,
}

/// Queued items, each in its bucket's list; freed entries form a list of their own.
struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: u32,
}

impl<T> Slab<T> {
    /// Appends `item` to `list`.
    fn append(&mut self, list: &mut List, item: T) {
        let at = if self.free != NIL {
            let at = self.free;
            match self.entries.get_mut(at as usize) {
                Some(e) => {
                    self.free = e.next;
                    *e = Entry {
                        item: Some(item),
                        next: NIL,
                    };
                }
                None => return,
            }
            at
        } else {
            // Fewer than u32::MAX events are ever in flight (each is a datagram or a timer).
            let at = self.entries.len() as u32;
            self.entries.push(Entry {
                item: Some(item),
                next: NIL,
            });
            at
        };
        match self.entries.get_mut(list.tail as usize) {
            Some(last) if list.tail != NIL => last.next = at,
            _ => list.head = at,
        }
        list.tail = at;
    }

    /// Moves the items of `list` to `out`, in order, freeing their entries; how many.
    fn drain(&mut self, list: List, out: &mut Vec<T>) -> usize {
        let (mut at, mut n) = (list.head, 0);
        while let Some(e) = self.entries.get_mut(at as usize) {
            let next = e.next;
            if let Some(item) = e.item.take() {
                out.push(item);
                n += 1;
            }
            e.next = self.free;
            self.free = at;
            at = next;
        }
        n
    }
}

pub struct Calendar<T> {
    ring: Vec<List>,
    /// Buckets too far ahead for the ring, by bucket number.
    far: BTreeMap<u64, List>,
    slab: Slab<T>,
    /// The next bucket to hand out; nothing earlier is queued.
    cursor: u64,
    queued: usize,
    /// How many of the queued items are in `far`.
    far_items: usize,
    spare: Vec<Vec<T>>,
}

impl<T> Calendar<T> {
    /// A ring of `span` buckets; `first` is the earliest bucket that will be pushed.
    pub fn new(span: usize, first: u64) -> Self {
        Calendar {
            ring: vec![List::EMPTY; span.max(1)],
            far: BTreeMap::new(),
            slab: Slab {
                entries: Vec::new(),
                free: NIL,
            },
            cursor: first,
            queued: 0,
            far_items: 0,
            spare: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    fn slot(&self, bucket: u64) -> usize {
        (bucket % self.ring.len() as u64) as usize
    }

    /// Queues `item` in `bucket`; a bucket already handed out counts as the next one.
    pub fn push(&mut self, bucket: u64, item: T) {
        let bucket = bucket.max(self.cursor);
        self.queued += 1;
        if bucket - self.cursor < self.ring.len() as u64 {
            let slot = self.slot(bucket);
            if let Some(list) = self.ring.get_mut(slot) {
                self.slab.append(list, item);
            }
        } else {
            self.far_items += 1;
            let list = self.far.entry(bucket).or_insert(List::EMPTY);
            self.slab.append(list, item);
        }
    }

    /// The earliest non-empty bucket and its items, in push order. Hand the vector back with
    /// [`Calendar::recycle`] to reuse its allocation.
    pub fn pop(&mut self) -> Option<(u64, Vec<T>)> {
        if self.queued == 0 {
            return None;
        }
        loop {
            let bucket = self.cursor;
            let items = self.take(bucket);
            if !items.is_empty() {
                return Some((bucket, items));
            }
            self.recycle(items);
            // Skip a long empty stretch straight to the next far bucket.
            if self.queued == self.far_items {
                if let Some(&k) = self.far.keys().next() {
                    self.cursor = k;
                }
            }
        }
    }

    /// The first bucket at or after the cursor that holds items, without moving the cursor.
    pub fn next_bucket(&self) -> Option<u64> {
        if self.queued == 0 {
            return None;
        }
        let far = self.far.keys().next().copied();
        if self.queued > self.far_items {
            for ahead in 0..self.ring.len() as u64 {
                let bucket = self.cursor + ahead;
                if far.is_some_and(|f| f <= bucket) {
                    break;
                }
                if self
                    .ring
                    .get(self.slot(bucket))
                    .is_some_and(|list| !list.is_empty())
                {
                    return Some(bucket);
                }
            }
        }
        far
    }

    /// Takes the items of `bucket` (none if it is behind the cursor) and moves the cursor
    /// past it. Several calendars can so be run in step: take the same bucket from each.
    /// Every bucket between the cursor and `bucket` must be empty (see [`Self::next_bucket`]).
    pub fn take(&mut self, bucket: u64) -> Vec<T> {
        let mut items = self.spare.pop().unwrap_or_default();
        if bucket < self.cursor {
            return items;
        }
        // Items parked in `far` were pushed before any that went straight to the ring.
        if self
            .far
            .first_key_value()
            .is_some_and(|(&k, _)| k == bucket)
        {
            if let Some((_, parked)) = self.far.pop_first() {
                self.far_items -= self.slab.drain(parked, &mut items);
            }
        }
        if bucket - self.cursor < self.ring.len() as u64 {
            let slot = self.slot(bucket);
            if let Some(list) = self.ring.get_mut(slot) {
                let list = std::mem::replace(list, List::EMPTY);
                self.slab.drain(list, &mut items);
            }
        }
        self.cursor = bucket + 1;
        self.queued -= items.len();
        items
    }

    pub fn recycle(&mut self, mut items: Vec<T>) {
        if items.capacity() > 0 && self.spare.len() < MAX_SPARE {
            items.clear();
            self.spare.push(items);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_come_out_in_order_and_items_in_push_order() {
        let mut c = Calendar::new(4, 10);
        c.push(12, "b1");
        c.push(30, "far1");
        c.push(10, "a");
        c.push(12, "b2");
        c.push(5, "late: counts as the cursor's bucket");
        assert_eq!(c.len(), 5);
        assert_eq!(
            c.pop(),
            Some((10, vec!["a", "late: counts as the cursor's bucket"]))
        );
        assert_eq!(c.pop(), Some((12, vec!["b1", "b2"])));
        // Once the ring reaches bucket 30, items pushed there now follow the parked ones.
        c.push(29, "c");
        assert_eq!(c.pop(), Some((29, vec!["c"])));
        c.push(30, "far2");
        assert_eq!(c.pop(), Some((30, vec!["far1", "far2"])));
        assert_eq!(c.pop(), None);
        assert!(c.is_empty());
    }

    #[test]
    fn calendars_run_in_step_bucket_by_bucket() {
        let mut c = Calendar::new(4, 10);
        assert_eq!(c.next_bucket(), None);
        c.push(11, "a");
        c.push(40, "far");
        assert_eq!(c.next_bucket(), Some(11));
        assert_eq!(c.take(10), Vec::<&str>::new());
        assert_eq!(c.take(11), vec!["a"]);
        // Pushed behind the cursor: the next bucket.
        c.push(3, "late");
        assert_eq!(c.next_bucket(), Some(12));
        assert_eq!(c.take(12), vec!["late"]);
        assert_eq!(c.next_bucket(), Some(40));
        c.push(40, "far2");
        assert_eq!(c.take(40), vec!["far", "far2"]);
        assert!(c.is_empty());
        assert_eq!(c.next_bucket(), None);
    }

    #[test]
    fn a_long_empty_stretch_is_skipped() {
        let mut c = Calendar::new(8, 0);
        c.push(1_000_000_000, 1u32);
        assert_eq!(c.pop(), Some((1_000_000_000, vec![1])));
    }

    #[test]
    fn the_slab_holds_no_more_entries_than_were_ever_queued_at_once() {
        let mut c = Calendar::new(64, 0);
        // Three items a bucket: two 1 to 50 buckets ahead, one 70 to 99 ahead (parked in
        // `far`, past the ring of 64), for 10,000 buckets.
        let due = |b: u64, k: u64| {
            b + if k < 2 {
                1 + (b * 7 + k) % 50
            } else {
                70 + b % 30
            }
        };
        let (mut most, mut taken) = (0, 0);
        for bucket in 0..10_000u64 {
            for k in 0..3 {
                c.push(due(bucket, k), (bucket, k));
            }
            most = most.max(c.len());
            let items = c.take(bucket);
            assert!(items.iter().all(|&(b, k)| due(b, k) == bucket));
            taken += items.len();
            c.recycle(items);
        }
        while let Some((bucket, items)) = c.pop() {
            assert!(items.iter().all(|&(b, k)| due(b, k) == bucket));
            taken += items.len();
        }
        assert_eq!((taken, c.len()), (30_000, 0));
        assert!(most < 250, "{most} queued at most");
        assert!(
            c.slab.entries.len() <= most,
            "{} entries",
            c.slab.entries.len()
        );
    }
}
