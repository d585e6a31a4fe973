//! Which sequence numbers of one (host, epoch) are stored: exactly.
//!
//! Agents send batches in increasing sequence order, so the stored set is
//! "everything up to the high-water mark, except the gaps": sequences the
//! agent never delivered (its spool dropped them, or the coordinator refused
//! them). Keeping the gaps, not only the high-water mark, makes two answers
//! exact that a bare high-water mark gets wrong:
//!
//! - deduplication: a batch inside a gap was never stored, so it is stored now
//!   (and the gap shrinks) instead of being acknowledged as a duplicate;
//! - in-doubt resolution: an agent that dropped a batch it had already sent
//!   asks whether the coordinator has it, and gets "stored" or "not stored".
//!
//! Gaps are bounded to the newest [`MAX_GAPS`] ranges. Below the oldest kept
//! gap the answer is only known when the sequence is above `complete_from`;
//! otherwise it is [`Verdict::Unknown`], never a guess.
//!
//! Encoding (meta CF value): `hwm:u64be complete_from:u64be (lo:u64be hi:u64be)*`.
//! The 8-byte form written by earlier versions (high-water mark only) decodes
//! with `complete_from = hwm + 1`: nothing below it is known to be a gap.

/// Gap ranges kept per (host, epoch); each costs 16 bytes in one meta value.
pub const MAX_GAPS: usize = 256;

/// Whether a sequence is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Stored,
    NotStored,
    /// Older than the ledger remembers.
    Unknown,
}

/// Stored sequences of one (host, epoch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Highest stored sequence; 0 when nothing is stored.
    hwm: u64,
    /// Gaps are tracked exactly for sequences `>= complete_from`.
    complete_from: u64,
    /// Disjoint, sorted, inclusive ranges of sequences `<= hwm` not stored.
    gaps: Vec<(u64, u64)>,
}

impl Ledger {
    pub fn high_water_mark(&self) -> u64 {
        self.hwm
    }

    pub fn verdict(&self, seq: u64) -> Verdict {
        if seq == 0 || seq > self.hwm {
            return Verdict::NotStored;
        }
        if self.in_gap(seq).is_some() {
            return Verdict::NotStored;
        }
        if seq < self.complete_from {
            return Verdict::Unknown;
        }
        Verdict::Stored
    }

    /// True when a batch with this sequence must not be stored again. A
    /// sequence below the remembered range counts as stored: an old replay
    /// is far likelier than a months-late first delivery.
    pub fn is_duplicate(&self, seq: u64) -> bool {
        self.verdict(seq) != Verdict::NotStored
    }

    fn in_gap(&self, seq: u64) -> Option<usize> {
        let i = self.gaps.partition_point(|&(_, hi)| hi < seq);
        self.gaps.get(i).filter(|&&(lo, _)| lo <= seq).map(|_| i)
    }

    /// Record `seq` as stored. Call only when `!is_duplicate(seq)`.
    pub fn insert(&mut self, seq: u64) {
        if seq > self.hwm {
            if seq > self.hwm + 1 {
                self.gaps.push((self.hwm + 1, seq - 1));
            }
            self.hwm = seq;
            if self.complete_from == 0 {
                self.complete_from = 1;
            }
        } else if let Some(i) = self.in_gap(seq) {
            let (lo, hi) = self.gaps[i];
            match (lo == seq, hi == seq) {
                (true, true) => {
                    self.gaps.remove(i);
                }
                (true, false) => self.gaps[i].0 = seq + 1,
                (false, true) => self.gaps[i].1 = seq - 1,
                (false, false) => {
                    self.gaps[i].1 = seq - 1;
                    self.gaps.insert(i + 1, (seq + 1, hi));
                }
            }
        }
        if self.gaps.len() > MAX_GAPS {
            let cut = self.gaps.len() - MAX_GAPS;
            // Forget the oldest gaps: below the first kept one, answers become Unknown.
            self.complete_from = self.gaps[cut - 1].1 + 1;
            self.gaps.drain(..cut);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 16 * self.gaps.len());
        out.extend_from_slice(&self.hwm.to_be_bytes());
        out.extend_from_slice(&self.complete_from.to_be_bytes());
        for (lo, hi) in &self.gaps {
            out.extend_from_slice(&lo.to_be_bytes());
            out.extend_from_slice(&hi.to_be_bytes());
        }
        out
    }

    /// Decode, checking every structural invariant.
    pub fn decode(b: &[u8]) -> Result<Ledger, String> {
        let word = |i: usize| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        if b.len() == 8 {
            let hwm = word(0);
            return Ok(Ledger {
                hwm,
                complete_from: hwm + 1,
                gaps: Vec::new(),
            });
        }
        if b.len() < 16 || !b.len().is_multiple_of(16) {
            return Err(format!("sequence ledger of {} bytes", b.len()));
        }
        let (hwm, complete_from) = (word(0), word(1));
        let mut gaps = Vec::with_capacity(b.len() / 16 - 1);
        let mut prev_hi = 0u64;
        for k in 1..b.len() / 16 {
            let (lo, hi) = (word(2 * k), word(2 * k + 1));
            let ordered = lo <= hi && hi < hwm && (gaps.is_empty() || lo > prev_hi + 1);
            if !ordered || lo == 0 {
                return Err(format!("sequence ledger gap {lo}..={hi} out of order"));
            }
            prev_hi = hi;
            gaps.push((lo, hi));
        }
        Ok(Ledger {
            hwm,
            complete_from,
            gaps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn gaps_are_not_stored_and_can_be_filled() {
        let mut l = Ledger::default();
        assert_eq!(l.verdict(1), Verdict::NotStored);
        for s in [1, 2, 5, 9] {
            assert!(!l.is_duplicate(s));
            l.insert(s);
        }
        let v: Vec<_> = (1..=10).map(|s| l.verdict(s)).collect();
        use Verdict::{NotStored as N, Stored as S};
        assert_eq!(v, [S, S, N, N, S, N, N, N, S, N]);
        l.insert(7);
        assert_eq!(l.verdict(7), S);
        assert_eq!((l.verdict(6), l.verdict(8)), (N, N));
        assert_eq!(Ledger::decode(&l.encode()), Ok(l));
    }

    #[test]
    fn legacy_high_water_mark_decodes_as_all_stored_but_unknown_below() {
        let l = Ledger::decode(&41u64.to_be_bytes()).unwrap();
        assert_eq!(l.high_water_mark(), 41);
        assert_eq!(l.verdict(10), Verdict::Unknown);
        assert!(l.is_duplicate(10), "an old replay is not stored twice");
        assert_eq!(l.verdict(42), Verdict::NotStored);
    }

    #[test]
    fn forgotten_gaps_answer_unknown_never_a_guess() {
        let mut l = Ledger::default();
        for k in 0..(MAX_GAPS as u64 + 10) {
            l.insert(2 * k + 1); // every even sequence is a gap
        }
        assert_eq!(l.gaps.len(), MAX_GAPS);
        // The ten oldest gaps (2, 4, .., 20) were forgotten: no guess about them
        // nor about the stored sequences between them.
        assert_eq!(l.verdict(2), Verdict::Unknown);
        assert_eq!(l.verdict(1), Verdict::Unknown);
        assert_eq!(l.verdict(22), Verdict::NotStored);
        assert_eq!(l.verdict(23), Verdict::Stored);
        let newest_gap = l.hwm - 1;
        assert_eq!(l.verdict(newest_gap), Verdict::NotStored);
        assert_eq!(l.verdict(l.hwm), Verdict::Stored);
    }

    #[test]
    fn malformed_encodings_are_refused() {
        assert!(Ledger::decode(&[0; 12]).is_err());
        let mut bad = Ledger::default();
        bad.insert(10);
        let mut b = bad.encode();
        b[16..24].copy_from_slice(&20u64.to_be_bytes()); // gap past hwm
        assert!(Ledger::decode(&b).is_err());
    }

    proptest! {
        /// Against a set model: every answer is the truth, or Unknown only
        /// for sequences older than the kept gaps.
        #[test]
        fn ledger_matches_a_set(ops in proptest::collection::vec(1u64..2000, 0..600)) {
            let mut l = Ledger::default();
            let mut model = BTreeSet::new();
            for s in ops {
                let dup = l.is_duplicate(s);
                if model.contains(&s) {
                    prop_assert!(dup, "stored {s} must be a duplicate");
                }
                if !dup {
                    l.insert(s);
                    model.insert(s);
                }
                let round = Ledger::decode(&l.encode());
                prop_assert_eq!(round.as_ref(), Ok(&l));
            }
            for s in 1..2100u64 {
                let truth = if model.contains(&s) { Verdict::Stored } else { Verdict::NotStored };
                let got = l.verdict(s);
                prop_assert!(got == truth || (got == Verdict::Unknown && s < l.complete_from),
                    "seq {s}: got {got:?}, truth {truth:?}");
            }
        }
    }
}
