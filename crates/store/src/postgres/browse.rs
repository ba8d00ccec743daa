//! Lists for people on PostgreSQL: a search, an order by name or by last
//! change, and keyset pages, over the same table descriptors as the records.

use tokio_postgres::types::ToSql;

use super::records::{param, select_list, to_record};
use super::{qualified, PgStore};
use crate::browse::{sort_column, Browse, BrowsePage, Cursor, From, Order, Sort};
use crate::error::{from_pg, StoreError};
use crate::model::{ColumnType, Kind};

/// `updated_at` at microsecond `$n`.
fn at_param(n: usize) -> String {
    format!("('epoch'::timestamptz + ${n}::text::int8 * interval '1 microsecond')")
}

/// Which rows a list holds: the search over `kind`'s name (settings: key
/// and value) in parameter `$s`, and a flow's app in `$a`.
fn filter(kind: Kind, s: usize, a: usize) -> String {
    let t = kind.table();
    let has = |expr: &str| format!("strpos(lower({expr}), lower(${s}::text)) > 0");
    let matched = match (kind, t.title) {
        (Kind::Setting, _) => format!("{} OR {}", has("key"), has("value::text")),
        (_, Some(title)) => has(title),
        (_, None) => has(t.key.name),
    };
    let app = match kind {
        Kind::Flow => format!("(${a}::text IS NULL OR app_id = ${a}::text::uuid)"),
        _ => format!("${a}::text IS NULL"),
    };
    format!("(${s}::text IS NULL OR {matched}) AND {app}")
}

impl PgStore {
    pub(crate) async fn browse(&self, kind: Kind, b: &Browse) -> Result<BrowsePage, StoreError> {
        b.check()?;
        let t = kind.table();
        let sort = sort_column(kind, b.sort, "updated_at");
        let p_value = match (b.sort, t.title) {
            (Sort::Name, Some(_)) => "lower($4::text)".to_string(),
            (Sort::Name, None) => param(&t.key, 4),
            (Sort::Changed, _) => at_param(4),
        };
        let order = Order::new(b, &sort, t.key.name, &p_value, &param(&t.key, 5));
        let cursor = match &b.from {
            From::Start => None,
            From::After(c) | From::Before(c) => Some(c),
        };
        let (value, key): (Option<String>, Option<String>) = match cursor {
            None => (None, None),
            Some(c @ Cursor::Name { name, .. }) => (Some(name.clone()), Some(c.key().to_string())),
            Some(c @ Cursor::Changed { at, .. }) => (Some(at.0.to_string()), Some(c.key().to_string())),
        };
        // A cursor whose key is no key of this kind was not made by a page link.
        if t.key.ty == ColumnType::Uuid && key.as_deref().is_some_and(|k| uuid::Uuid::try_parse(k).is_err()) {
            return Err(StoreError::invalid("after", "not a position in this list (follow the page links)"));
        }
        let condition = match order.condition.as_str() {
            "" => "$4::text IS NULL AND $5::text IS NULL".to_string(),
            c => c.to_string(),
        };
        let page_sql = format!(
            "SELECT {} FROM {} WHERE {} AND {condition} ORDER BY {} LIMIT $2",
            select_list(t),
            qualified(t),
            filter(kind, 1, 3),
            order.order_by
        );
        let count_sql = format!("SELECT count(*) FROM {} WHERE {}", qualified(t), filter(kind, 1, 2));
        let search = b.needle();
        let fetch = i64::from(b.limit) + 1;
        let page_params: [&(dyn ToSql + Sync); 5] = [&search, &fetch, &b.app_id, &value, &key];
        let count_params: [&(dyn ToSql + Sync); 2] = [&search, &b.app_id];
        let ctx = format!("listing {}", t.name);
        let conn = self.conn().await?;
        let (page_stmt, count_stmt) = tokio::try_join!(conn.prepare_cached(&page_sql), conn.prepare_cached(&count_sql))
            .map_err(|e| from_pg("preparing a list", &e))?;
        // Both on one connection, pipelined: one round trip.
        let (rows, count) =
            tokio::try_join!(conn.query(&page_stmt, &page_params), conn.query_one(&count_stmt, &count_params))
                .map_err(|e| from_pg(&ctx, &e))?;
        let items = rows.iter().map(|r| to_record(kind, r)).collect::<Result<Vec<_>, _>>()?;
        Ok(BrowsePage::from_rows(b, items, count.get(0)))
    }
}
