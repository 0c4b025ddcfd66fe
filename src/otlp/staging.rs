//! One shared buffer that the threads producing a signal's records append
//! to, handed to the [`super::Batcher`] a full chunk at a time.
//!
//! Queuing each record on its own costs an allocation and a channel send
//! per record, and moves the record's memory from the thread that wrote it
//! to the export thread that frees it (glibc returns such a block to the
//! writer's arena under a lock). Staged, a record costs a short critical
//! section and a copy of its bytes; the batch queue sees one item per
//! `batch` records, and the export thread reads one contiguous buffer.
//!
//! Used by the OTLP logs (each JSON line behind a fixed header, transcoded on
//! the export thread) and the span pipeline (each span already encoded as
//! protobuf, written behind a gap that the request's enclosing headers fill
//! at export: no copy of the batch).

use std::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
};

/// Records staged for export: `head` bytes the encoder may fill, then the
/// records as the signal wrote them.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub(crate) bytes: Vec<u8>,
    /// Records in `bytes`.
    pub(crate) count: usize,
}

impl Chunk {
    /// The records, past the head.
    pub(crate) fn records(&self, head: usize) -> &[u8] {
        self.bytes.get(head..).unwrap_or_default()
    }
}

/// The shared chunk being filled, and the emptied buffers the worker hands
/// back.
#[derive(Debug)]
pub(crate) struct Staging {
    chunk: Mutex<Chunk>,
    /// Records per chunk (the signal's `MAX_EXPORT_BATCH_SIZE`).
    batch: usize,
    /// Bytes reserved at the start of every chunk.
    head: usize,
    pool: Mutex<Vec<Vec<u8>>>,
    /// The size of the last full chunk: a fresh buffer starts with room
    /// for as much, rather than growing (copying and faulting in pages)
    /// record by record.
    last_len: AtomicUsize,
}

/// Emptied buffers kept for reuse: enough for a burst of a few batches
/// (`benches/logging.rs` queues 40 before the worker catches up).
const POOL: usize = 8;

impl Staging {
    /// Chunks of `batch` records (at least 1), each starting with `head`
    /// reserved bytes.
    pub(crate) fn new(batch: usize, head: usize) -> Self {
        Self {
            chunk: Mutex::new(Chunk {
                bytes: vec![0; head],
                count: 0,
            }),
            batch: batch.max(1),
            head,
            pool: Mutex::default(),
            last_len: AtomicUsize::new(0),
        }
    }

    /// Append one record that `write` appends to the chunk's bytes; the
    /// chunk when it is full, a fresh one left in its place.
    #[inline]
    pub(crate) fn push(&self, write: impl FnOnce(&mut Vec<u8>)) -> Option<Chunk> {
        let mut chunk = self.chunk.lock().unwrap_or_else(|e| e.into_inner());
        write(&mut chunk.bytes);
        chunk.count += 1;
        (chunk.count >= self.batch).then(|| self.swap(&mut chunk))
    }

    /// The partly filled chunk, if it holds a record.
    pub(crate) fn take(&self) -> Option<Chunk> {
        let mut chunk = self.chunk.lock().unwrap_or_else(|e| e.into_inner());
        (chunk.count > 0).then(|| self.swap(&mut chunk))
    }

    fn swap(&self, chunk: &mut Chunk) -> Chunk {
        if chunk.count >= self.batch {
            self.last_len.store(chunk.bytes.len(), Ordering::Relaxed);
        }
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut bytes = pooled.unwrap_or_else(|| {
            let len = self.last_len.load(Ordering::Relaxed).max(self.head);
            Vec::with_capacity(len + len / 8)
        });
        bytes.resize(self.head, 0);
        std::mem::replace(chunk, Chunk { bytes, count: 0 })
    }

    /// Keep the buffer of an exported chunk for a later one.
    pub(crate) fn recycle(&self, mut bytes: Vec<u8>) {
        bytes.clear();
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL {
            pool.push(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_handed_over_when_it_holds_a_batch_and_keeps_its_head() {
        let staging = Staging::new(3, 4);
        assert!(staging.push(|b| b.extend_from_slice(b"ab")).is_none());
        assert!(staging.push(|b| b.extend_from_slice(b"cd")).is_none());
        let full = staging.push(|b| b.extend_from_slice(b"ef")).expect("full");
        assert_eq!(full.count, 3);
        assert_eq!(full.bytes, b"\0\0\0\0abcdef");
        assert_eq!(full.records(4), b"abcdef");
        assert!(staging.take().is_none(), "the fresh chunk is empty");
        staging.recycle(full.bytes);
        assert!(staging.push(|b| b.push(b'x')).is_none());
        let part = staging.take().expect("one record");
        assert_eq!((part.count, part.records(4)), (1, &b"x"[..]));
        assert_eq!(part.bytes.len(), 5, "a recycled buffer gets its head back");
    }
}
