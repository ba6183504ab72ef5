//! How much memory an SSH upload may buffer, shared by all uploads the process runs at once.
//!
//! One upload alone gets a large window (it keeps a fast link busy and makes few copies); an
//! upload fanned out to hundreds of targets must not hold hundreds of those. Uploads take the
//! largest size that still fits in a process-wide budget, and the smallest size always, so an
//! upload never waits for memory: with n uploads at once the buffers hold at most
//! [`BUDGET`] plus n times the smallest size.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes all upload buffers may hold together beyond the smallest size each always gets.
pub const BUDGET: usize = 96 * 1024 * 1024;

const MIB: usize = 1024 * 1024;

/// (window, read block), largest first. The window is the data handed to libssh2 ahead of
/// acknowledgements: 4 MiB covers a fast link with some latency; 256 KiB still covers a LAN,
/// where the share of each target in a wide fan-out is small anyway.
const LARGER: [(usize, usize); 2] = [(4 * MIB, MIB), (MIB, 256 * 1024)];
/// Always granted, whatever the budget says.
const SMALLEST: (usize, usize) = (256 * 1024, 64 * 1024);

static RESERVED: AtomicUsize = AtomicUsize::new(0);

/// One upload's share; gives it back when dropped.
#[derive(Debug)]
pub struct UploadBuffer {
    /// Bytes handed to libssh2 ahead of acknowledgements.
    pub window: usize,
    /// Bytes read from the file at a time.
    pub block: usize,
    /// The buffer: the unsent rest (at most a window and a block) moves to its front after
    /// every two windows and blocks sent, so about one byte in three is copied once more.
    pub len: usize,
    /// What this share counts against [`BUDGET`] (0 for the smallest size).
    reserved: usize,
}

impl UploadBuffer {
    /// The largest size that fits in what other uploads left of the budget.
    pub fn reserve() -> UploadBuffer {
        for size in LARGER {
            let len = 3 * (size.0 + size.1);
            let fits = RESERVED
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                    (r + len <= BUDGET).then_some(r + len)
                })
                .is_ok();
            if fits {
                return UploadBuffer::of(size, len);
            }
        }
        UploadBuffer::of(SMALLEST, 0)
    }

    fn of((window, block): (usize, usize), reserved: usize) -> UploadBuffer {
        UploadBuffer {
            window,
            block,
            len: 3 * (window + block),
            reserved,
        }
    }
}

impl Drop for UploadBuffer {
    fn drop(&mut self) {
        if self.reserved > 0 {
            RESERVED.fetch_sub(self.reserved, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test only: the budget is process-wide, and tests in this binary run in parallel.
    #[test]
    fn many_uploads_share_the_budget_and_give_it_back() {
        let first = UploadBuffer::reserve();
        assert_eq!(first.window, LARGER[0].0);
        assert!(
            first.len >= 3 * first.window,
            "room for moving the rest rarely"
        );

        let many: Vec<UploadBuffer> = (0..300).map(|_| UploadBuffer::reserve()).collect();
        let total: usize = many.iter().chain([&first]).map(|b| b.len).sum();
        let smallest = 3 * (SMALLEST.0 + SMALLEST.1);
        assert!(
            total <= BUDGET + 301 * smallest,
            "301 uploads hold {total} bytes"
        );
        assert!(
            many.iter()
                .all(|b| b.window >= b.block && b.len >= 2 * (b.window + b.block)),
            "every size keeps a window and a block, twice"
        );
        assert_eq!(many.last().map(|b| b.window), Some(SMALLEST.0));

        drop(many);
        drop(first);
        assert_eq!(RESERVED.load(Ordering::Acquire), 0, "all given back");
        assert_eq!(UploadBuffer::reserve().window, LARGER[0].0);
    }
}
