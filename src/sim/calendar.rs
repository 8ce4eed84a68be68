//! The simulator's event queue: a calendar of time buckets.
//!
//! Nearly every event falls within a few seconds of now, so buckets live in a ring indexed by
//! bucket number; the rare later ones wait in an ordered map until the ring reaches them.
//! Events of one bucket come out in the order they were pushed, which is what makes a run
//! reproducible without sorting.
//!
//! Each bucket is a linked list of blocks of up to [`BLOCK`] items, drawn from one pool.
//! Bucket vectors each kept the capacity of the busiest bucket they had served (reused from a
//! pool of spares) or doubled past their items: at 2,000 peers they held 6 times the events in
//! flight, 24 KB a peer, the largest part of the simulator's heap (massif). The pool holds
//! the blocks in flight at the peak: full ones, and at most one part-filled block (room for
//! 64 items) per non-empty bucket, so sparse buckets cost up to 64 item slots each. A list of
//! single items (one slab entry each) held no more, but walking it cost 13 % of bl-sim's time
//! against 8 % for the bucket vectors (perf, 5,000 peers): blocks are walked item after item.

use std::collections::BTreeMap;

/// The end of a list.
const NIL: u32 = u32::MAX;

/// Items a block holds. At 10,000 peers a 1 ms bucket holds thousands of events; a bucket
/// of a few wastes less than a block.
const BLOCK: usize = 64;

/// Emptied output vectors kept for reuse: one per calendar taken from at a time covers it.
const MAX_SPARE: usize = 4;

/// A bucket: the first and last of its blocks in the pool. Not `Copy`: draining a stale copy
/// would free its blocks twice.
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

/// Up to [`BLOCK`] queued items of one bucket, in push order, and the bucket's next block
/// (or, on the free list, the next free block).
struct Block<T> {
    items: Vec<T>,
    next: u32,
}

/// Every block; freed ones form a list of their own and keep their allocation.
struct Slab<T> {
    blocks: Vec<Block<T>>,
    free: u32,
}

impl<T> Slab<T> {
    /// Appends `item` to `list`.
    fn append(&mut self, list: &mut List, item: T) {
        if let Some(last) = self.blocks.get_mut(list.tail as usize) {
            if list.tail != NIL && last.items.len() < BLOCK {
                last.items.push(item);
                return;
            }
        }
        let at = if self.free != NIL {
            let at = self.free;
            match self.blocks.get_mut(at as usize) {
                Some(b) => {
                    self.free = b.next;
                    b.next = NIL;
                    b.items.push(item);
                }
                None => return,
            }
            at
        } else {
            // Fewer than u32::MAX blocks are ever in flight (each item is a datagram or a timer).
            let at = self.blocks.len() as u32;
            let mut items = Vec::with_capacity(BLOCK);
            items.push(item);
            self.blocks.push(Block { items, next: NIL });
            at
        };
        match self.blocks.get_mut(list.tail as usize) {
            Some(last) if list.tail != NIL => last.next = at,
            _ => list.head = at,
        }
        list.tail = at;
    }

    /// Moves the items of `list` to `out`, in order, freeing its blocks; how many.
    fn drain(&mut self, list: List, out: &mut Vec<T>) -> usize {
        let (mut at, before) = (list.head, out.len());
        while let Some(b) = self.blocks.get_mut(at as usize) {
            let next = b.next;
            // Leaves the block empty with its allocation, to be reused (std's `append` keeps
            // it; `the_pool_holds_no_more_blocks_than_items_ever_queued_at_once` checks).
            out.append(&mut b.items);
            b.next = self.free;
            self.free = at;
            at = next;
        }
        out.len() - before
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
                blocks: Vec::new(),
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
    fn a_bucket_of_many_blocks_keeps_push_order() {
        let mut c = Calendar::new(8, 0);
        for i in 0..5 * BLOCK as u32 + 3 {
            c.push(2, i);
            c.push(3 + u64::from(i % 2), i);
        }
        let n = 5 * BLOCK as u32 + 3;
        assert_eq!(c.take(0), Vec::<u32>::new());
        assert_eq!(c.take(1), Vec::<u32>::new());
        assert_eq!(c.take(2), (0..n).collect::<Vec<_>>());
        assert_eq!(c.take(3), (0..n).step_by(2).collect::<Vec<_>>());
        assert_eq!(c.take(4), (1..n).step_by(2).collect::<Vec<_>>());
        assert!(c.is_empty());
    }

    #[test]
    fn a_long_empty_stretch_is_skipped() {
        let mut c = Calendar::new(8, 0);
        c.push(1_000_000_000, 1u32);
        assert_eq!(c.pop(), Some((1_000_000_000, vec![1])));
    }

    #[test]
    fn the_pool_holds_no_more_blocks_than_items_ever_queued_at_once() {
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
        // Blocks are reused, never more than one an item in flight at the peak.
        let blocks = c.slab.blocks.len();
        assert!(blocks <= most, "{blocks} blocks");
        assert!(
            c.slab.blocks.iter().all(|b| b.items.capacity() == BLOCK),
            "blocks keep their size"
        );
    }
}
