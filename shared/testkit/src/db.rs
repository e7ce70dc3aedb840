//! Scratch databases: a SQLite file in a temporary folder, or a PostgreSQL database with a
//! unique name on the local server, dropped when the value is.

use std::fmt;

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database};
use tempfile::TempDir;

/// Where the server-side tests' PostgreSQL is, as an admin URL.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A storage backend the services support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Every backend: tests that touch storage run on each.
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// A database that exists for one test.
pub struct ScratchDb {
    url: String,
    backend: Backend,
    /// Keeps the SQLite file's folder alive.
    _dir: Option<TempDir>,
    /// The PostgreSQL database to drop, and the admin URL to drop it with.
    postgres: Option<(String, String)>,
}

impl ScratchDb {
    /// Makes an empty database on `backend`.
    pub async fn new(backend: Backend) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::Builder::new().prefix("gradients-db-").tempdir()?;
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                Ok(Self { url, backend, _dir: Some(dir), postgres: None })
            }
            Backend::Postgres => {
                let admin = admin_url();
                let name = format!("gradients_test_{}", uuid::Uuid::new_v4().simple());
                let db =
                    Database::connect(&admin).await.with_context(|| format!("connecting to PostgreSQL at {admin}"))?;
                db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .with_context(|| format!("creating the scratch database {name}"))?;
                db.close().await?;
                let url = database_url(&admin, &name);
                Ok(Self { url, backend, _dir: None, postgres: Some((admin, name)) })
            }
        }
    }

    /// The URL a service connects with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Which backend it is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else { return };
        // Drop runs inside a test's runtime, which cannot be blocked on: use a thread of our own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let db = Database::connect(&admin).await?;
                db.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
                db.close().await?;
                anyhow::Ok(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: could not drop the scratch PostgreSQL database: {error:#}"),
            Err(_) => eprintln!("warning: dropping a scratch PostgreSQL database panicked"),
        }
    }
}

/// The admin URL from `GRADIENTS_TEST_PG_URL`, or the local server's `postgres` user.
fn admin_url() -> String {
    std::env::var("GRADIENTS_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// The admin URL with its database replaced by `name`, keeping any `?query`.
fn database_url(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Database, Statement};

    use super::*;

    /// The scratch URL points the admin URL at the new database, whatever the admin URL's shape.
    #[test]
    fn database_url_replaces_only_the_database() {
        let cases = [
            ("postgres://postgres@127.0.0.1:5432/postgres", "postgres://postgres@127.0.0.1:5432/x"),
            ("postgres://postgres@127.0.0.1:5432", "postgres://postgres@127.0.0.1:5432/x"),
            ("postgres://u:p@h/postgres?sslmode=disable", "postgres://u:p@h/x?sslmode=disable"),
            ("postgres://u@h:1?sslmode=disable", "postgres://u@h:1/x?sslmode=disable"),
        ];
        for (admin, expected) in cases {
            assert_eq!(database_url(admin, "x"), expected, "{admin}");
        }
    }

    /// Two scratch databases at once are distinct.
    #[tokio::test]
    async fn scratch_databases_never_collide() {
        for backend in Backend::ALL {
            let one = ScratchDb::new(backend).await.unwrap();
            let two = ScratchDb::new(backend).await.unwrap();
            assert_ne!(one.url(), two.url());
            assert_eq!(one.backend(), backend);
        }
    }

    /// Each backend gives a usable, empty database; a PostgreSQL one is gone after drop.
    #[tokio::test]
    async fn scratch_databases_work_and_are_dropped() {
        for backend in Backend::ALL {
            let scratch = ScratchDb::new(backend).await.unwrap();
            let db = Database::connect(scratch.url()).await.unwrap();
            db.execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY)").await.unwrap();
            db.execute_unprepared("INSERT INTO t (id) VALUES (1)").await.unwrap();
            db.close().await.unwrap();
            let name = scratch.postgres.as_ref().map(|(_, name)| name.clone());
            drop(scratch);
            if let Some(name) = name {
                let admin = Database::connect(admin_url()).await.unwrap();
                let statement = Statement::from_string(
                    admin.get_database_backend(),
                    format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
                );
                assert!(admin.query_one_raw(statement).await.unwrap().is_none(), "{name} still exists");
            }
        }
    }
}
