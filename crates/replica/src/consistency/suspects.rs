//! Which differing keys of one table are suspects (seen differing once) and
//! which are known to differ (still differing alike a tick later, with no
//! change of theirs in flight). Pure; `engine::postgres::consistency` reads
//! the rows.

use crate::read::TextKey;
use std::collections::{HashMap, HashSet};

/// How many known differing keys a table keeps (and counts) at most.
pub const KNOWN_CAP: usize = 100_000;

/// The row hashes each database holds for one key (`None`: no row), in the
/// sync's order.
pub type Hashes = Vec<Option<String>>;

/// Differing keys of one table: suspects seen once, and keys known to differ.
#[derive(Debug, Default)]
pub struct Suspects {
    suspects: HashMap<TextKey, Hashes>,
    known: HashSet<TextKey>,
}

impl Suspects {
    /// Keys to read again this tick: the suspects and the known ones.
    pub fn to_recheck(&self) -> Vec<TextKey> {
        self.suspects.keys().chain(self.known.iter()).cloned().collect()
    }

    /// Takes this tick's reading of the rechecked keys (`now`: their hashes,
    /// `moving`: those with changes in flight) and the chunk's new suspects.
    pub fn update(&mut self, now: &HashMap<TextKey, Hashes>, moving: &HashSet<TextKey>, found: Vec<(TextKey, Hashes)>) {
        let differs = |h: &Hashes| h.iter().any(|x| x != &h[0]);
        self.known.retain(|k| now.get(k).is_some_and(differs));
        let suspects = std::mem::take(&mut self.suspects);
        for (key, before) in suspects {
            let Some(after) = now.get(&key) else { continue };
            if !differs(after) {
                continue;
            }
            if *after == before && !moving.contains(&key) {
                if self.known.len() < KNOWN_CAP {
                    self.known.insert(key);
                }
            } else {
                self.suspects.insert(key, after.clone());
            }
        }
        for (key, hashes) in found {
            if !self.known.contains(&key) && !moving.contains(&key) {
                self.suspects.insert(key, hashes);
            }
        }
    }

    /// Rows known to differ.
    pub fn known(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(values: &[Option<&str>]) -> Hashes {
        values.iter().map(|v| v.map(str::to_string)).collect()
    }

    fn key(k: &str) -> TextKey {
        vec![k.to_string()]
    }

    #[test]
    fn a_difference_is_known_only_when_it_holds_still_a_tick_later() {
        let mut s = Suspects::default();
        let none = HashSet::new();
        s.update(
            &HashMap::new(),
            &none,
            vec![(key("1"), h(&[Some("a"), Some("b")])), (key("2"), h(&[Some("a"), None]))],
        );
        assert_eq!(s.known(), 0, "first seen: only suspects");
        let mut now = HashMap::new();
        now.insert(key("1"), h(&[Some("a"), Some("b")]));
        now.insert(key("2"), h(&[Some("a"), Some("a")]));
        s.update(&now, &none, vec![]);
        assert_eq!(s.known(), 1, "key 1 still differs alike; key 2 was shipped meanwhile");
        now.insert(key("1"), h(&[Some("a"), Some("a")]));
        s.update(&now, &none, vec![]);
        assert_eq!(s.known(), 0, "repaired: it leaves the count");
    }

    #[test]
    fn keys_that_keep_changing_or_wait_in_a_change_log_stay_suspects() {
        let mut s = Suspects::default();
        s.update(&HashMap::new(), &HashSet::new(), vec![(key("1"), h(&[Some("a"), Some("b")]))]);
        let mut now = HashMap::new();
        now.insert(key("1"), h(&[Some("c"), Some("b")]));
        s.update(&now, &HashSet::new(), vec![]);
        assert_eq!(s.known(), 0, "it changed meanwhile");
        let moving: HashSet<TextKey> = [key("1")].into_iter().collect();
        s.update(&now, &moving, vec![]);
        assert_eq!(s.known(), 0, "a change of it waits to be shipped");
        s.update(&now, &HashSet::new(), vec![]);
        assert_eq!(s.known(), 1);
    }
}
