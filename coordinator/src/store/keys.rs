//! Big-endian key layouts, so RocksDB's byte order is (series, time) order.
//!
//! ```text
//! catalog  'n' canonical-series-id           -> series key (u64 BE)
//!          'k' series key (u64 BE)           -> SeriesMeta (JSON)
//! samples  key(8) window(8) 0x00             -> sealed chunk of the window
//!          key(8) window(8) 0x01 chunk-id(8) -> partial chunk (one per ingest write)
//! rollups  key(8) resolution(1) window(8)    -> rollup buckets of the window
//! meta     'h' host                          -> HostRecord (JSON)
//!          's' host 0x00 epoch(8)            -> stored-sequence ledger (ledger.rs)
//!          'd' window(8) key(8)              -> window has partial chunks (compaction queue)
//!          'c' name                          -> counters / allocators (u64 BE)
//!          'e' host 0x00 identity(8)         -> HardwareEvent (JSON; events.rs)
//!          'M' kind 0x00 version(8)          -> model bytes (models.rs)
//!          'm' kind 0x00 version(8)          -> ModelRecord (JSON)
//!          'a' kind                          -> active model version (u64 BE)
//! ```
//!
//! Timestamps are i64 milliseconds stored with the sign bit flipped so that
//! negative times sort before positive ones.

pub(crate) const SEALED: u8 = 0;
pub(crate) const PARTIAL: u8 = 1;

pub(crate) fn time_be(ts: i64) -> [u8; 8] {
    (ts.cast_unsigned() ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn time_from_be(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.get(..8)?.try_into().ok()?) ^ (1 << 63)).cast_signed())
}

pub(crate) fn u64_from_be(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

pub(crate) fn catalog_name(canonical: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + canonical.len());
    k.push(b'n');
    k.extend_from_slice(canonical);
    k
}

pub(crate) fn catalog_key(series: u64) -> [u8; 9] {
    let mut k = [b'k'; 9];
    k[1..].copy_from_slice(&series.to_be_bytes());
    k
}

/// Prefix of every chunk of `series` in `window`.
pub(crate) fn window_prefix(series: u64, window: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&series.to_be_bytes());
    k[8..].copy_from_slice(&time_be(window));
    k
}

pub(crate) fn sealed(series: u64, window: i64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..16].copy_from_slice(&window_prefix(series, window));
    k[16] = SEALED;
    k
}

pub(crate) fn partial(series: u64, window: i64, chunk_id: u64) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..16].copy_from_slice(&window_prefix(series, window));
    k[16] = PARTIAL;
    k[17..].copy_from_slice(&chunk_id.to_be_bytes());
    k
}

/// (series, window) of a samples-CF key.
pub(crate) fn parse_chunk_key(k: &[u8]) -> Option<(u64, i64)> {
    if k.len() != 17 && k.len() != 25 {
        return None;
    }
    Some((u64_from_be(k)?, time_from_be(&k[8..])?))
}

pub(crate) fn rollup(series: u64, resolution: u8, window: i64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..8].copy_from_slice(&series.to_be_bytes());
    k[8] = resolution;
    k[9..].copy_from_slice(&time_be(window));
    k
}

pub(crate) fn host(host: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + host.len());
    k.push(b'h');
    k.extend_from_slice(host.as_bytes());
    k
}

pub(crate) fn sequence(host: &str, epoch: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + host.len());
    k.push(b's');
    k.extend_from_slice(host.as_bytes());
    k.push(0);
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

pub(crate) fn dirty(window: i64, series: u64) -> [u8; 17] {
    let mut k = [b'd'; 17];
    k[1..9].copy_from_slice(&time_be(window));
    k[9..].copy_from_slice(&series.to_be_bytes());
    k
}

pub(crate) fn parse_dirty(k: &[u8]) -> Option<(i64, u64)> {
    (k.len() == 17 && k[0] == b'd')
        .then(|| (time_from_be(&k[1..9]), u64_from_be(&k[9..])))
        .and_then(|(w, s)| Some((w?, s?)))
}

pub(crate) fn counter(name: &str) -> Vec<u8> {
    let mut k = vec![b'c'];
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn time_order_is_byte_order(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), time_be(a).cmp(&time_be(b)));
            prop_assert_eq!(time_from_be(&time_be(a)), Some(a));
        }

        #[test]
        fn chunk_keys_sort_by_series_then_window(s1 in any::<u64>(), w1 in any::<i64>(), s2 in any::<u64>(), w2 in any::<i64>(), c in any::<u64>()) {
            prop_assert_eq!((s1, w1).cmp(&(s2, w2)), sealed(s1, w1).cmp(&sealed(s2, w2)));
            // within a window, the sealed chunk sorts before every partial one
            prop_assert!(sealed(s1, w1).as_slice() < partial(s1, w1, c).as_slice());
            prop_assert_eq!(parse_chunk_key(&partial(s1, w1, c)), Some((s1, w1)));
            prop_assert_eq!(parse_dirty(&dirty(w1, s1)), Some((w1, s1)));
        }
    }
}
