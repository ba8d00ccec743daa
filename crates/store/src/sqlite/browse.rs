//! Lists for people in SQLite: the same search, orders and keyset pages as
//! on PostgreSQL (`lower` and `instr` instead of `strpos`).

use rusqlite::types::Value;

use super::records::{query, select_list};
use super::SqliteStore;
use crate::browse::{sort_column, Browse, BrowsePage, Cursor, From, Order, Sort};
use crate::error::{from_sqlite, StoreError};
use crate::model::Kind;

/// Which rows a list holds: the search (`?1`) over `kind`'s name (settings:
/// key and value) and a flow's app (`?2`).
fn filter(kind: Kind) -> String {
    let t = kind.table();
    let has = |expr: &str| format!("instr(lower({expr}), lower(?1)) > 0");
    let matched = match (kind, t.title) {
        (Kind::Setting, _) => format!("{} OR {}", has("key"), has("value")),
        (_, Some(title)) => has(title),
        (_, None) => has(t.key.name),
    };
    let app = match kind {
        Kind::Flow => "(?2 IS NULL OR app_id = ?2)",
        _ => "?2 IS NULL",
    };
    format!("(?1 IS NULL OR {matched}) AND {app}")
}

impl SqliteStore {
    pub(crate) async fn browse(&self, kind: Kind, b: &Browse) -> Result<BrowsePage, StoreError> {
        b.check()?;
        let t = kind.table();
        let sort = sort_column(kind, b.sort, "updated_at");
        let p_value = match (b.sort, t.title) {
            (Sort::Name, Some(_)) => "lower(?4)",
            _ => "?4",
        };
        let order = Order::new(b, &sort, t.key.name, p_value, "?5");
        let (value, key) = match &b.from {
            From::Start => (Value::Null, Value::Null),
            From::After(c) | From::Before(c) => {
                let value = match c {
                    Cursor::Name { name, .. } => Value::Text(name.clone()),
                    Cursor::Changed { at, .. } => Value::Integer(at.0),
                };
                (value, Value::Text(c.key().to_string()))
            }
        };
        let condition = match order.condition.as_str() {
            "" => "?4 IS NULL AND ?5 IS NULL".to_string(),
            c => c.to_string(),
        };
        let page_sql = format!(
            "SELECT {} FROM {} WHERE {} AND {condition} ORDER BY {} LIMIT ?3",
            select_list(t),
            t.name,
            filter(kind),
            order.order_by
        );
        let count_sql = format!("SELECT count(*) FROM {} WHERE {}", t.name, filter(kind));
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
        let (search, app) = (text(&b.needle()), text(&b.app_id));
        let fetch = i64::from(b.limit) + 1;
        let page_params = vec![search.clone(), app.clone(), Value::Integer(fetch), value, key];
        let (rows, total) = self
            .run(move |c, _| {
                // One connection, one read transaction: the count and the page agree.
                let ctx = format!("listing {}", kind.as_str());
                c.execute_batch("BEGIN").map_err(|e| from_sqlite(&ctx, &e))?;
                let result = (|| {
                    let rows = query(c, kind, &page_sql, page_params)?;
                    let total: i64 = c
                        .query_row(&count_sql, rusqlite::params_from_iter([search, app]), |r| r.get(0))
                        .map_err(|e| from_sqlite(&ctx, &e))?;
                    Ok((rows, total))
                })();
                let _ = c.execute_batch("COMMIT");
                result
            })
            .await?;
        Ok(BrowsePage::from_rows(b, rows, total))
    }
}
