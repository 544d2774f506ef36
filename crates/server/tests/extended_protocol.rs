//! The extended query protocol end to end, as drivers use it: Parse with
//! inferred parameter types, binary parameters, binary result columns, and
//! SQLSTATE codes on errors. Also answers sent as they are read, in both
//! protocols.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use tidemark_server::{Database, DatabaseConfig, StateBackend};
use tokio::net::TcpListener;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Removes the test's data directory, also when the test panics.
struct DataDir(std::path::PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a fresh database and server on an ephemeral port and connects.
async fn connect(name: &str) -> (Client, DataDir) {
    let data_dir =
        DataDir(std::env::temp_dir().join(format!("tidemark-ext-{name}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&data_dir.0);
    std::fs::create_dir_all(&data_dir.0).expect("create data dir");
    let db = Database::start(DatabaseConfig {
        data_dir: data_dir.0.clone(),
        parallelism: 2,
        checkpoint_interval: Duration::from_secs(1),
        state_backend: StateBackend::Memory,
        state_cache_bytes: 64 << 20,
        operator_cache_bytes: 64 << 20,
        backfill_rows: tidemark_server::DEFAULT_BACKFILL_ROWS,
        restore_from: None,
        retain: tidemark_server::RetainPolicy::default(),
    })
    .await
    .expect("database starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    tokio::spawn(tidemark_server::pgwire::serve(listener, Arc::new(db)));
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=tidemark dbname=tidemark"),
        NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    (client, data_dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_parameters_and_binary_results() {
    let (client, _data_dir) = connect("typed").await;
    client
        .batch_execute("CREATE TABLE t (k INT PRIMARY KEY, v BIGINT, s TEXT, d DOUBLE PRECISION, ts TIMESTAMP)")
        .await
        .expect("create table");

    let insert = client
        .prepare("INSERT INTO t VALUES ($1, $2, $3, $4, $5)")
        .await
        .expect("prepare insert");
    let ts = NaiveDate::from_ymd_opt(2024, 1, 1)
        .and_then(|d| d.and_hms_micro_opt(0, 0, 5, 500_000))
        .expect("valid timestamp");
    let inserted = client
        .execute(&insert, &[&1i32, &10i64, &"one", &1.5f64, &ts])
        .await
        .expect("insert 1");
    assert_eq!(inserted, 1);
    client
        .execute(&insert, &[&2i32, &20i64, &"two", &0.1f64, &ts])
        .await
        .expect("insert 2");
    client.batch_execute("FLUSH").await.expect("flush");

    let rows = client
        .query("SELECT k, v, s, d, ts FROM t WHERE k = $1", &[&1i32])
        .await
        .expect("select");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(row.get::<_, i64>(1), 10);
    assert_eq!(row.get::<_, String>(2), "one");
    assert_eq!(row.get::<_, f64>(3), 1.5);
    assert_eq!(row.get::<_, chrono::NaiveDateTime>(4), ts);

    let none = client
        .query("SELECT k FROM t WHERE k = $1", &[&99i32])
        .await
        .expect("select nothing");
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate() {
    let (client, _data_dir) = connect("errors").await;

    let err = client
        .query("SELECT * FROM missing WHERE k = $1", &[&1i32])
        .await
        .expect_err("missing table");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE), "{err:?}");

    client
        .batch_execute("CREATE TABLE u (k INT PRIMARY KEY, v BIGINT)")
        .await
        .expect("create table");
    client
        .execute("INSERT INTO u VALUES ($1, $2)", &[&1i32, &1i64])
        .await
        .expect("first insert");
    let err = client
        .execute("INSERT INTO u VALUES ($1, $2)", &[&1i32, &2i64])
        .await
        .expect_err("duplicate key");
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION), "{err:?}");

    // The session stays usable after errors.
    let rows = client
        .query("SELECT 1::INT", &[])
        .await
        .expect("select after errors");
    assert_eq!(rows[0].get::<_, i32>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_results_of_every_type() {
    let (client, _data_dir) = connect("binary").await;
    let rows = client
        .query(
            "SELECT CAST(123.45 AS DECIMAL(10, 2)), DATE '2024-01-01', INTERVAL '1 day 2 hours', \
             TRUE, CAST(NULL AS TEXT), CAST(1.5 AS REAL), CAST(7 AS SMALLINT), \
             CAST('2024-01-01 00:00:05' AS TIMESTAMPTZ)",
            &[],
        )
        .await
        .expect("select literals");
    let row = &rows[0];
    assert_eq!(row.get::<_, rust_decimal::Decimal>(0).to_string(), "123.45");
    assert_eq!(
        row.get::<_, NaiveDate>(1),
        NaiveDate::from_ymd_opt(2024, 1, 1).expect("date")
    );
    assert_eq!(
        row.get::<_, pg_interval::Interval>(2),
        pg_interval::Interval::new(0, 1, 7_200_000_000)
    );
    assert!(row.get::<_, bool>(3));
    assert_eq!(row.get::<_, Option<String>>(4), None);
    assert_eq!(row.get::<_, f32>(5), 1.5);
    assert_eq!(row.get::<_, i16>(6), 7);
    let tstz = row.get::<_, chrono::DateTime<chrono::Utc>>(7);
    assert_eq!(tstz.to_rfc3339(), "2024-01-01T00:00:05+00:00");

    // NULL parameters, and NULLs read back in binary.
    client
        .batch_execute("CREATE TABLE n (k INT PRIMARY KEY, v BIGINT)")
        .await
        .expect("create table");
    client
        .execute("INSERT INTO n VALUES ($1, $2)", &[&1i32, &None::<i64>])
        .await
        .expect("insert null");
    client.batch_execute("FLUSH").await.expect("flush");
    let rows = client
        .query("SELECT v FROM n WHERE k = $1", &[&1i32])
        .await
        .expect("select null");
    assert_eq!(rows[0].get::<_, Option<i64>>(0), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_gives_a_parameter_its_type() {
    let (client, _data_dir) = connect("cast").await;
    let row = client
        .query_one("SELECT $1::BIGINT + 1 AS n, $2::TEXT AS s", &[&41i64, &"x"])
        .await
        .expect("typed by the cast");
    assert_eq!(row.get::<_, i64>("n"), 42);
    assert_eq!(row.get::<_, String>("s"), "x");
}

/// A `SELECT`'s answer is read while it is sent: every row arrives, and an
/// error partway (past the first batch) ends the answer with its SQLSTATE
/// and leaves the connection usable, in both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_stream_and_an_error_partway_keeps_the_connection() {
    let (client, _data_dir) = connect("streamed").await;
    client
        .batch_execute(
            "CREATE TABLE big (id BIGINT PRIMARY KEY, v BIGINT);
             INSERT INTO big SELECT value, value % 10 FROM generate_series(1, 50000);
             FLUSH",
        )
        .await
        .expect("fill");

    let mut rows = 0;
    let mut sum = 0i64;
    for message in client
        .simple_query("SELECT id, v FROM big")
        .await
        .expect("simple")
    {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            rows += 1;
            sum += row.get(0).unwrap().parse::<i64>().unwrap();
        }
    }
    assert_eq!((rows, sum), (50000, 1_250_025_000));
    let extended = client
        .query("SELECT id FROM big WHERE v >= $1", &[&0i64])
        .await
        .expect("extended");
    assert_eq!(extended.len(), 50000);
    let sum: i64 = extended.iter().map(|r| r.get::<_, i64>(0)).sum();
    assert_eq!(sum, 1_250_025_000);

    // Rows come in key order, pages of 4096: id 40000 is in a later batch.
    let err = client
        .simple_query("SELECT id / (id - 40000) FROM big")
        .await
        .expect_err("division by zero partway");
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO), "{err:?}");
    let err = client
        .query("SELECT id / (id - $1) FROM big", &[&40000i64])
        .await
        .expect_err("division by zero partway, extended");
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO), "{err:?}");

    let count = client
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .expect("the connection still answers");
    assert_eq!(count.get::<_, i64>(0), 50000);
}
