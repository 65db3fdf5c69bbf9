//! Splitting a run's cases over N machines (`--partition K/N`).
//!
//! Cases are sorted by name and dealt round-robin, so the split depends only on the set of names (not on
//! the order files were listed in), every case lands in exactly one partition, and partition sizes differ
//! by at most one.

use std::fmt;
use std::str::FromStr;

/// Partition `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: usize,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error("partition `{0}` is not K/N (e.g. 2/3)")]
    Syntax(String),
    #[error("partition {index}/{count} is out of range: need 1 <= K <= N")]
    Range { index: usize, count: usize },
}

impl Partition {
    pub fn new(index: usize, count: usize) -> Result<Self, PartitionError> {
        if count == 0 || index == 0 || index > count {
            return Err(PartitionError::Range { index, count });
        }
        Ok(Partition { index, count })
    }
}

impl FromStr for Partition {
    type Err = PartitionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| PartitionError::Syntax(s.to_string()))?;
        let parse = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| PartitionError::Syntax(s.to_string()))
        };
        Partition::new(parse(k)?, parse(n)?)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The cases of partition `k` of `n` (1-based `k`), in name order. Duplicate names count once.
pub fn partition<T: AsRef<str> + Clone>(
    cases: &[T],
    k: usize,
    n: usize,
) -> Result<Vec<T>, PartitionError> {
    let part = Partition::new(k, n)?;
    Ok(select(cases, part))
}

/// [`partition`] with an already checked [`Partition`].
pub fn select<T: AsRef<str> + Clone>(cases: &[T], part: Partition) -> Vec<T> {
    let mut sorted: Vec<&T> = cases.iter().collect();
    sorted.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    sorted.dedup_by(|a, b| a.as_ref() == b.as_ref());
    sorted
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % part.count == part.index - 1)
        .map(|(_, c)| c.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            "2/3".parse::<Partition>().unwrap(),
            Partition { index: 2, count: 3 }
        );
        assert_eq!("2/3".parse::<Partition>().unwrap().to_string(), "2/3");
        assert!(matches!(
            "0/3".parse::<Partition>(),
            Err(PartitionError::Range { .. })
        ));
        assert!(matches!(
            "4/3".parse::<Partition>(),
            Err(PartitionError::Range { .. })
        ));
        assert!(matches!(
            "1/0".parse::<Partition>(),
            Err(PartitionError::Range { .. })
        ));
        assert!(matches!(
            "1-3".parse::<Partition>(),
            Err(PartitionError::Syntax(_))
        ));
        assert!(matches!(
            "a/3".parse::<Partition>(),
            Err(PartitionError::Syntax(_))
        ));
    }

    #[test]
    fn small_example() {
        let cases = ["c", "a", "e", "b", "d"];
        assert_eq!(partition(&cases, 1, 2).unwrap(), ["a", "c", "e"]);
        assert_eq!(partition(&cases, 2, 2).unwrap(), ["b", "d"]);
        assert_eq!(partition(&cases, 3, 3).unwrap(), ["c"]);
    }

    proptest! {
        #[test]
        fn every_case_in_exactly_one_partition(
            names in proptest::collection::btree_set("[a-z0-9_/-]{1,12}", 0..60),
            n in 1usize..9,
            seed in any::<u64>(),
        ) {
            let names: Vec<String> = names.into_iter().collect();
            // Same set in another order: the split must not change.
            let mut shuffled = names.clone();
            let len = shuffled.len();
            if len > 1 {
                let mut s = seed;
                for i in (1..len).rev() {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    shuffled.swap(i, (s >> 33) as usize % (i + 1));
                }
            }
            let mut seen = std::collections::BTreeMap::new();
            let mut sizes = Vec::new();
            for k in 1..=n {
                let part = partition(&names, k, n).unwrap();
                prop_assert_eq!(&part, &partition(&shuffled, k, n).unwrap());
                sizes.push(part.len());
                for c in part {
                    *seen.entry(c).or_insert(0) += 1;
                }
            }
            prop_assert_eq!(seen.len(), names.len());
            prop_assert!(seen.values().all(|&count| count == 1));
            let (min, max) = (sizes.iter().min().copied().unwrap_or(0), sizes.iter().max().copied().unwrap_or(0));
            prop_assert!(max - min <= 1, "sizes {:?}", sizes);
        }
    }
}
