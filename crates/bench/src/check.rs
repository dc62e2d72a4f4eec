//! Checking what arrived: sequence-numbered payloads, the [`Tally`] of a one-way stream,
//! RPC response ids, and the [`Progress`] count the stall watchdog reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::ensure;

/// How long a run may go without progress before it is declared stalled (a lost message
/// would otherwise be waited for forever).
pub(crate) const STALL: Duration = Duration::from_secs(10);
/// Bytes in a sequence number or RPC id at the front of every payload.
pub(crate) const SEQ_BYTES: usize = 8;

/// Verified items so far, for the stall watchdog.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Counts one verified item.
    pub(crate) fn tick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Verified items so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Completes once the count has not moved for [`STALL`].
    pub(crate) async fn stalled(&self) {
        let tick = Duration::from_millis(250);
        let (mut last, mut quiet) = (self.get(), Duration::ZERO);
        loop {
            tokio::time::sleep(tick).await;
            let now = self.get();
            if now == last {
                quiet += tick;
                if quiet >= STALL {
                    return;
                }
            } else {
                (last, quiet) = (now, Duration::ZERO);
            }
        }
    }
}

/// Checks a one-way stream of messages: each of the expected size, carrying the next sequence
/// number in its first 8 bytes (little-endian); at the end, the count and bytes.
#[derive(Debug)]
pub(crate) struct Tally {
    expected: u64,
    size: usize,
    received: u64,
    bytes: u64,
}

impl Tally {
    /// Expects `expected` messages of `size` bytes, numbered from 0.
    pub(crate) fn new(expected: u64, size: usize) -> Self {
        Self {
            expected,
            size,
            received: 0,
            bytes: 0,
        }
    }

    /// Checks the next message.
    pub(crate) fn record(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        ensure!(
            payload.len() == self.size,
            "message {} has {} bytes, expected {}",
            self.received,
            payload.len(),
            self.size
        );
        let seq = read_seq(payload);
        ensure!(
            seq == self.received,
            "message {} carries sequence number {seq} (lost or reordered messages)",
            self.received
        );
        self.received += 1;
        self.bytes += payload.len() as u64;
        Ok(())
    }

    /// Whether every expected message has arrived.
    pub(crate) fn is_complete(&self) -> bool {
        self.received >= self.expected
    }

    /// Messages so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Fails unless exactly the expected messages and bytes arrived; returns (messages, bytes).
    pub(crate) fn finish(&self) -> anyhow::Result<(u64, u64)> {
        ensure!(
            self.received == self.expected,
            "received {} messages, sent {}",
            self.received,
            self.expected
        );
        let bytes = self.expected * self.size as u64;
        ensure!(
            self.bytes == bytes,
            "received {} bytes, sent {bytes}",
            self.bytes
        );
        Ok((self.received, self.bytes))
    }
}

/// A payload of `size` bytes carrying `seq` up front, the rest a fixed pattern.
pub(crate) fn payload(seq: u64, size: usize) -> Vec<u8> {
    let mut bytes = vec![0x5a; size];
    write_seq(&mut bytes, seq);
    bytes
}

/// Writes `seq` into the first 8 bytes.
pub(crate) fn write_seq(payload: &mut [u8], seq: u64) {
    payload[..SEQ_BYTES].copy_from_slice(&seq.to_le_bytes());
}

/// The sequence number or RPC id in the first 8 bytes (0 if the payload is shorter).
pub(crate) fn read_seq(payload: &[u8]) -> u64 {
    payload
        .get(..SEQ_BYTES)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Checks an RPC response against its request id and size.
pub(crate) fn check_response(response: &[u8], id: u64, size: usize) -> anyhow::Result<()> {
    ensure!(
        response.len() == size,
        "response to RPC {id} has {} bytes, expected {size}",
        response.len()
    );
    let got = read_seq(response);
    ensure!(got == id, "response to RPC {id} carries id {got}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_fails_on_a_missing_message() {
        let mut tally = Tally::new(3, 16);
        tally.record(&payload(0, 16)).unwrap();
        tally.record(&payload(1, 16)).unwrap();
        let err = tally.finish().unwrap_err();
        assert!(
            err.to_string().contains("received 2 messages, sent 3"),
            "{err}"
        );
    }

    #[test]
    fn a_tally_fails_on_a_skipped_or_resized_message() {
        let mut tally = Tally::new(3, 16);
        tally.record(&payload(0, 16)).unwrap();
        assert!(tally.record(&payload(2, 16)).is_err());
        assert!(tally.record(&payload(1, 15)).is_err());
        tally.record(&payload(1, 16)).unwrap();
        tally.record(&payload(2, 16)).unwrap();
        assert_eq!(tally.finish().unwrap(), (3, 48));
    }

    #[test]
    fn a_response_must_carry_its_request_id() {
        check_response(&payload(7, 64), 7, 64).unwrap();
        assert!(check_response(&payload(8, 64), 7, 64).is_err());
        assert!(check_response(&payload(7, 63), 7, 64).is_err());
    }
}
