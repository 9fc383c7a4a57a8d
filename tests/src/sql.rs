//! Looking at the SQL stores' tables directly, from synchronous test code
//! (the probes of `server_stores.rs`): each query runs on a connection of
//! its own, on a runtime of its own in a thread of its own, so it never
//! waits on the test's runtime.

use std::future::Future;

use sqlx::Connection as _;

/// Runs `future` to completion on a fresh runtime in another thread.
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(future)
    })
    .join()
    .expect("the query thread ends")
}

/// The one `BIGINT` column of the first row of `sql` with `$1` = `bind`
/// on the PostgreSQL database at `url`, `None` without a row.
pub fn postgres_i64(url: &str, sql: &str, bind: &str) -> Option<i64> {
    let (url, sql, bind) = (url.to_owned(), sql.to_owned(), bind.to_owned());
    block_on(async move {
        let mut connection = sqlx::PgConnection::connect(&url)
            .await
            .expect("the test connects to PostgreSQL");
        let row: Option<(i64,)> = sqlx::query_as(&sql)
            .bind(bind)
            .fetch_optional(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        row.map(|(value,)| value)
    })
}

/// [`postgres_i64`] on the MySQL or MariaDB database at `url` (`?` =
/// `bind`).
pub fn mysql_i64(url: &str, sql: &str, bind: &str) -> Option<i64> {
    let (url, sql, bind) = (url.to_owned(), sql.to_owned(), bind.to_owned());
    block_on(async move {
        let mut connection = sqlx::MySqlConnection::connect(&url)
            .await
            .expect("the test connects to MariaDB");
        let row: Option<(i64,)> = sqlx::query_as(&sql)
            .bind(bind)
            .fetch_optional(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        row.map(|(value,)| value)
    })
}

/// [`postgres_i64`] on the SQLite database at `url` (`?1` = `bind`).
pub fn sqlite_i64(url: &str, sql: &str, bind: &str) -> Option<i64> {
    let (url, sql, bind) = (url.to_owned(), sql.to_owned(), bind.to_owned());
    block_on(async move {
        let mut connection = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("the test opens the SQLite database");
        let row: Option<(i64,)> = sqlx::query_as(&sql)
            .bind(bind)
            .fetch_optional(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        row.map(|(value,)| value)
    })
}
