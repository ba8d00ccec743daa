//! Which tables `tables: all` replicates on real PostgreSQL: unlogged tables
//! like any other, whatever it leaves out listed with the reason, and any
//! identifier — a name holding `$dugong$` included.

mod common;

use common::{prepare, sync_all, Sites};

#[tokio::test]
async fn unlogged_tables_replicate_and_what_is_left_out_says_why() {
    let sites = Sites::new(
        "kinds",
        2,
        "CREATE UNLOGGED TABLE cache (id int PRIMARY KEY, v text);
         CREATE TABLE plain (id int PRIMARY KEY);
         CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM plain;
         CREATE FOREIGN DATA WRAPPER nowhere;
         CREATE SERVER elsewhere FOREIGN DATA WRAPPER nowhere;
         CREATE FOREIGN TABLE remote (id int) SERVER elsewhere;
         CREATE TABLE loose (v text);",
    )
    .await;
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    let names: Vec<String> = p.plan.tables.iter().map(|t| t.name.display_name()).collect();
    assert_eq!(names, vec!["public.cache", "public.plain"]);
    let excluded: Vec<(&str, &str)> = p.plan.excluded.iter().map(|e| (e.table.as_str(), e.reason.as_str())).collect();
    assert_eq!(
        excluded,
        vec![
            ("public.loose", "no primary key"),
            ("public.remote", "foreign table: its rows live on another server"),
            ("public.totals", "materialized view: refresh it on each site"),
        ]
    );
    sites.client(0).batch_execute("INSERT INTO cache VALUES (1, 'from 0')").await.unwrap();
    sites.client(1).batch_execute("INSERT INTO cache VALUES (2, 'from 1')").await.unwrap();
    sync_all(&mut p).await;
    assert_eq!(sites.assert_same("SELECT id, v FROM cache").await, vec!["1|from 0", "2|from 1"]);

    // Named in a list, it is found too.
    drop(p);
    let listed = sites.config(r#"{"sources": [0, 1], "tables": "cache", "onetimecopy": 0}"#);
    let mut p = prepare(&listed).await;
    sites.client(1).batch_execute("UPDATE cache SET v = 'changed on 1' WHERE id = 1").await.unwrap();
    sync_all(&mut p).await;
    assert_eq!(sites.assert_same("SELECT v FROM cache WHERE id = 1").await, vec!["changed on 1"]);
}

#[tokio::test]
async fn any_identifier_works_even_one_holding_the_capture_functions_quote_tag() {
    let sites = Sites::new(
        "dollar",
        2,
        r#"CREATE TABLE "odd$dugong$name" ("key$dugong$" int PRIMARY KEY, "v$dugong1$" text);
           CREATE TABLE "$dugong$" (id int PRIMARY KEY);"#,
    )
    .await;
    let config = sites.master_master();
    let mut p = prepare(&config).await;
    assert_eq!(p.plan.tables.len(), 2, "both tables replicate: {:?}", p.plan.excluded);
    sites.client(0).batch_execute(r#"INSERT INTO "odd$dugong$name" VALUES (1, 'a$dugong$b')"#).await.unwrap();
    sites.client(1).batch_execute(r#"INSERT INTO "$dugong$" VALUES (7)"#).await.unwrap();
    sync_all(&mut p).await;
    // A key change goes through the key trigger's function, named columns and all.
    sites
        .client(0)
        .batch_execute(r#"UPDATE "odd$dugong$name" SET "key$dugong$" = 3 WHERE "key$dugong$" = 1"#)
        .await
        .unwrap();
    sync_all(&mut p).await;
    assert_eq!(sites.assert_same(r#"SELECT * FROM "odd$dugong$name""#).await, vec!["3|a$dugong$b"]);
    assert_eq!(sites.assert_same(r#"SELECT * FROM "$dugong$""#).await, vec!["7"]);
}
