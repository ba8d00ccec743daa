//! The merge join of `compare`: one stream per database, each ordered by the
//! md5 of the key (byte order, `COLLATE "C"`), walked in step so only one row
//! per database is ever held.

use futures_util::{Stream, StreamExt};

/// One row of a table as `compare` streams it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// md5 of the key's text; the streams are ordered by it.
    pub key_hash: String,
    /// md5 of the whole row's text.
    pub row_hash: String,
    /// The key columns as text.
    pub key: Vec<String>,
}

/// A key with a difference; databases are indexes into the streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub key: Vec<String>,
    pub missing_on: Vec<usize>,
    /// Groups of databases with equal rows, when there are several groups.
    pub groups: Vec<Vec<usize>>,
}

/// What the merge found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Diff {
    /// Keys missing, per stream.
    pub missing: Vec<u64>,
    /// Keys present on several databases whose rows differ.
    pub differing: u64,
    /// Keys with any difference.
    pub total: u64,
    /// The first `limit` of them.
    pub found: Vec<Found>,
}

/// Walks the streams in key-hash order and collects the differing keys.
pub(crate) async fn diff<S, E>(streams: Vec<S>, limit: usize) -> Result<Diff, E>
where
    S: Stream<Item = Result<Entry, E>> + Unpin,
{
    let n = streams.len();
    let mut merge = Merge::start(streams).await?;
    let mut out = Diff { missing: vec![0; n], ..Diff::default() };
    while let Some(found) = merge.next_difference().await? {
        out.total += 1;
        out.differing += u64::from(!found.groups.is_empty());
        for &i in &found.missing_on {
            out.missing[i] += 1;
        }
        if out.found.len() < limit {
            out.found.push(found);
        }
    }
    Ok(out)
}

/// The merge in progress: the streams and the row each one is at. Callers
/// that act on every difference (`repair`, the consistency check) take them
/// one at a time with [`Merge::next_difference`].
pub(crate) struct Merge<S> {
    streams: Vec<S>,
    heads: Vec<Option<Entry>>,
}

impl<S, E> Merge<S>
where
    S: Stream<Item = Result<Entry, E>> + Unpin,
{
    /// Reads the first row of every stream.
    pub(crate) async fn start(mut streams: Vec<S>) -> Result<Merge<S>, E> {
        let mut heads = Vec::with_capacity(streams.len());
        for s in streams.iter_mut() {
            heads.push(s.next().await.transpose()?);
        }
        Ok(Merge { streams, heads })
    }

    /// The next key that is missing somewhere or differs; `None` at the end.
    pub(crate) async fn next_difference(&mut self) -> Result<Option<Found>, E> {
        let n = self.streams.len();
        while let Some(min) = self.heads.iter().flatten().map(|e| e.key_hash.as_str()).min().map(str::to_owned) {
            let heads = &self.heads;
            let present: Vec<usize> =
                (0..n).filter(|&i| heads[i].as_ref().is_some_and(|e| e.key_hash == min)).collect();
            let missing_on: Vec<usize> = (0..n).filter(|i| !present.contains(i)).collect();
            let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
            for &i in &present {
                let hash = &heads[i].as_ref().expect("present").row_hash;
                match groups.iter_mut().find(|(h, _)| h == hash) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((hash.clone(), vec![i])),
                }
            }
            let differs = groups.len() > 1;
            let found = (differs || !missing_on.is_empty()).then(|| Found {
                key: heads[present[0]].as_ref().expect("present").key.clone(),
                missing_on,
                groups: if differs { groups.into_iter().map(|(_, m)| m).collect() } else { Vec::new() },
            });
            for &i in &present {
                self.heads[i] = self.streams[i].next().await.transpose()?;
            }
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn e(key: &str, row: &str) -> Result<Entry, String> {
        Ok(Entry { key_hash: format!("h{key}"), row_hash: row.into(), key: vec![key.into()] })
    }

    async fn run(dbs: Vec<Vec<Result<Entry, String>>>, limit: usize) -> Result<Diff, String> {
        diff(dbs.into_iter().map(stream::iter).collect(), limit).await
    }

    #[tokio::test]
    async fn identical_streams_have_no_difference() {
        let rows = || vec![e("1", "a"), e("2", "b")];
        let d = run(vec![rows(), rows(), rows()], 10).await.unwrap();
        assert_eq!(d, Diff { missing: vec![0, 0, 0], ..Diff::default() });
    }

    #[tokio::test]
    async fn missing_extra_and_changed_keys_are_named() {
        let db0 = vec![e("1", "a"), e("2", "b"), e("3", "c"), e("5", "e")];
        let db1 = vec![e("1", "a"), e("3", "X"), e("4", "d"), e("5", "e")];
        let d = run(vec![db0, db1], 10).await.unwrap();
        assert_eq!(d.missing, vec![1, 1]);
        assert_eq!((d.differing, d.total), (1, 3));
        let keys: Vec<(&str, &[usize], usize)> =
            d.found.iter().map(|f| (f.key[0].as_str(), f.missing_on.as_slice(), f.groups.len())).collect();
        assert_eq!(keys, vec![("2", &[1][..], 0), ("3", &[][..], 2), ("4", &[0][..], 0)]);
    }

    #[tokio::test]
    async fn three_databases_group_equal_values_and_the_limit_caps_the_list() {
        let db0 = vec![e("1", "a"), e("2", "a")];
        let db1 = vec![e("1", "b"), e("2", "a")];
        let db2 = vec![e("1", "a")];
        let d = run(vec![db0, db1, db2], 1).await.unwrap();
        assert_eq!((d.total, d.differing, d.missing.clone()), (2, 1, vec![0, 0, 1]));
        assert_eq!(
            d.found,
            vec![Found { key: vec!["1".into()], missing_on: vec![], groups: vec![vec![0, 2], vec![1]] }]
        );
    }

    #[tokio::test]
    async fn an_empty_database_misses_every_key_and_errors_pass_through() {
        let d = run(vec![vec![e("1", "a"), e("2", "b")], vec![]], 10).await.unwrap();
        assert_eq!(d.missing, vec![0, 2]);
        let err = run(vec![vec![e("1", "a"), Err("broken".into())], vec![e("1", "a")]], 10).await.unwrap_err();
        assert_eq!(err, "broken");
    }
}
