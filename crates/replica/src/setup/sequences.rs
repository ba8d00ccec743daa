//! Interleaved sequences: two masters that both draw `serial` keys from
//! sequences counting 1, 2, 3… collide on their first inserts. Setup gives
//! site k of N (its place in the sync) the values k+1, k+1+N, k+1+2N… above
//! every value used anywhere so far; `status` warns about sequences that are
//! not interleaved. Pure arithmetic; the engine reads and alters sequences.

use dugong_core::{DbId, TableName};

/// A sequence as one site holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceState {
    pub db: DbId,
    pub increment: i64,
    /// The value `nextval` returns next.
    pub next: i64,
}

/// Whether the sites' copies of one sequence never hand out the same value:
/// each steps by the number of sites and starts at a residue of its own.
/// Descending sequences are left alone (reported as interleaved).
pub fn interleaved(states: &[SequenceState], sites: usize) -> bool {
    let n = sites.max(1) as i64;
    if states.iter().any(|s| s.increment < 0) {
        return true;
    }
    if states.len() < 2 {
        return true;
    }
    let mut residues: Vec<i64> = Vec::with_capacity(states.len());
    for s in states {
        if s.increment != n {
            return false;
        }
        let r = s.next.rem_euclid(n);
        if residues.contains(&r) {
            return false;
        }
        residues.push(r);
    }
    true
}

/// The first value site `position` (0-based, of `sites`) hands out: the
/// smallest one above `above` that is `position + 1` modulo `sites`.
pub fn start_for(position: usize, sites: usize, above: i64) -> i64 {
    let n = sites.max(1) as i64;
    let want = (position as i64 + 1).rem_euclid(n);
    let first = above.saturating_add(1);
    first.saturating_add((want - first.rem_euclid(n)).rem_euclid(n))
}

/// The warning `status` shows for sequences that are not interleaved.
pub fn advice(not_interleaved: &[(TableName, Vec<SequenceState>)], sites: usize) -> Option<String> {
    if not_interleaved.is_empty() {
        return None;
    }
    let named: Vec<String> = not_interleaved
        .iter()
        .take(5)
        .map(|(name, states)| {
            let each: Vec<String> =
                states.iter().map(|s| format!("{} step {} next {}", s.db, s.increment, s.next)).collect();
            format!("{} ({})", name.display_name(), each.join(", "))
        })
        .collect();
    let more = not_interleaved.len().saturating_sub(5);
    Some(format!(
        "{} sequence(s) not interleaved, so inserts on several sites can draw the same key: {}{}; run dugong setup with this configuration to give site k of {sites} the values k+1, k+1+{sites}, …",
        not_interleaved.len(),
        named.join("; "),
        if more > 0 { format!(" and {more} more") } else { String::new() },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(db: u32, increment: i64, next: i64) -> SequenceState {
        SequenceState { db: DbId(db), increment, next }
    }

    #[test]
    fn starts_are_above_the_maximum_with_each_sites_offset() {
        assert_eq!(start_for(0, 2, 100), 101);
        assert_eq!(start_for(1, 2, 100), 102);
        assert_eq!(start_for(0, 2, 101), 103);
        assert_eq!(start_for(1, 2, 101), 102);
        assert_eq!((0..3).map(|k| start_for(k, 3, 0)).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!((0..3).map(|k| start_for(k, 3, 10)).collect::<Vec<_>>(), vec![13, 11, 12]);
        for k in 0..3 {
            let v = start_for(k, 3, 1_000_000);
            assert!(v > 1_000_000 && v <= 1_000_003 && v % 3 == (k as i64 + 1) % 3);
        }
    }

    #[test]
    fn interleaving_needs_the_sites_step_and_distinct_offsets() {
        assert!(interleaved(&[s(0, 2, 101), s(1, 2, 102)], 2));
        assert!(!interleaved(&[s(0, 1, 101), s(1, 1, 1)], 2), "plain serials collide");
        assert!(!interleaved(&[s(0, 2, 101), s(1, 2, 103)], 2), "same offset");
        assert!(!interleaved(&[s(0, 2, 101), s(1, 2, 102), s(2, 2, 5)], 3), "a third site needs step 3");
        assert!(interleaved(&[s(0, 3, 13), s(1, 3, 11), s(2, 3, 12)], 3));
        assert!(interleaved(&[s(0, -1, 10), s(1, -1, 10)], 2), "descending sequences are left alone");
    }

    #[test]
    fn advice_names_the_sequences_and_the_fix() {
        let name = TableName::new("public", "t_id_seq");
        let text = advice(&[(name, vec![s(0, 1, 5), s(1, 1, 1)])], 2).unwrap();
        assert!(text.starts_with("1 sequence(s) not interleaved"), "{text}");
        assert!(text.contains("public.t_id_seq (db0 step 1 next 5, db1 step 1 next 1)"), "{text}");
        assert!(text.contains("run dugong setup"), "{text}");
        assert_eq!(advice(&[], 2), None);
    }
}
