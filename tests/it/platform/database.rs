//! The database layer: migrations at start and by command, concurrent starts, incompatible schemas,
//! timestamps, periodic-job leases.

use std::time::Duration;

use companion_hub::App;
use companion_hub::cli::migrate_command;
use companion_hub::db::{Db, Timestamp, migrate};
use companion_hub::db_dispatch;
use companion_hub::ops::jobs::JobLeases;
use reqwest::StatusCode;
use time::macros::datetime;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, TestDatabase, test_config};

const FUTURE_VERSION: i64 = 99_991_231_000_000;

async fn insert_unknown_migration(db: &Db) {
    db_dispatch!(db, pool => sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, $2, TRUE, $3, 0)",
    )
    .bind(FUTURE_VERSION)
    .bind("from a newer release")
    .bind(vec![0_u8; 48])
    .execute(pool)
    .await
    .map(|_| ()))
    .expect("insert a migration row");
}

async fn migrations_are_applied_at_start(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let status = migrate::status(&app.db).await.unwrap();
    assert!(status.is_current(), "{status:?}");
    assert!(!status.known.is_empty());
    assert!(status.known.iter().all(|m| m.applied));
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
}

async fn instances_starting_at_once_apply_each_migration_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(backend, dir.path()).await;
    let builds = (0..4).map(|_| {
        let config = test_config(dir.path(), &database.url, &[]);
        tokio::spawn(App::build(config))
    });
    let apps: Vec<App> = futures_util::future::join_all(builds)
        .await
        .into_iter()
        .map(|joined| joined.expect("no panic").expect("every instance starts"))
        .collect();
    let db = apps[0].db();
    let rows: Vec<(i64,)> = db_dispatch!(db, pool => sqlx::query_as(
        "SELECT version FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(pool)
    .await)
    .unwrap();
    let known = migrate::migrator(db.backend()).iter().count();
    assert_eq!(rows.len(), known, "each migration recorded exactly once");
    assert!(migrate::status(db).await.unwrap().is_current());
}

async fn a_database_newer_than_the_binary_is_refused_at_start(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    insert_unknown_migration(&app.db).await;
    let (dir, database) = app.stop_keeping_data().await;

    for migrate_on_start in ["true", "false"] {
        let config = test_config(
            dir.path(),
            &database.url,
            &[("MIGRATE_ON_START", migrate_on_start)],
        );
        let error = App::build(config)
            .await
            .err()
            .expect("a newer schema is refused")
            .to_string();
        assert!(error.contains("newer than this binary"), "{error}");
        assert!(error.contains(&FUTURE_VERSION.to_string()), "{error}");
    }
}

async fn a_running_instance_stops_being_ready_when_the_schema_moves_past_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.get("/api/ready").await.status(), StatusCode::OK);
    insert_unknown_migration(&app.db).await;
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["check"], "schema");
    assert_eq!(body["reason"], "schema_newer_than_binary");
    assert!(
        !body.to_string().contains(&FUTURE_VERSION.to_string()),
        "version numbers stay in the log: {body}"
    );
}

async fn without_migrate_on_start_the_instance_waits_for_the_migrate_command(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("MIGRATE_ON_START", "false")]).await;
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reason"], "migrations_pending", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("companion-hub migrate")
    );

    let config = test_config(&app.data_dir(), &app.database.url, &[]);
    let mut before = Vec::new();
    migrate_command(&config, true, &mut before).await.unwrap();
    let before = String::from_utf8(before).unwrap();
    assert!(before.contains("pending"), "{before}");
    assert!(before.contains("platform"), "names are listed: {before}");

    let mut applied = Vec::new();
    migrate_command(&config, false, &mut applied).await.unwrap();
    assert!(
        String::from_utf8(applied)
            .unwrap()
            .contains("migration(s) applied")
    );

    let mut after = Vec::new();
    migrate_command(&config, true, &mut after).await.unwrap();
    let after = String::from_utf8(after).unwrap();
    assert!(
        after.contains("applied") && after.contains(", 0 pending"),
        "{after}"
    );

    let mut again = Vec::new();
    migrate_command(&config, false, &mut again).await.unwrap();
    assert!(String::from_utf8(again).unwrap().contains("up to date"));

    assert_eq!(app.get("/api/ready").await.status(), StatusCode::OK);
}

async fn migrate_status_fails_on_a_newer_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    insert_unknown_migration(&app.db).await;
    let config = test_config(&app.data_dir(), &app.database.url, &[]);
    let mut out = Vec::new();
    let error = migrate_command(&config, true, &mut out).await.unwrap_err();
    assert!(error.to_string().contains("newer than this binary"));
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("unknown to this binary")
    );
}

async fn timestamps_compare_in_time_order_in_sql(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let whole = Timestamp::from(datetime!(2026-11-25 10:00:01 UTC));
    let later = whole + Duration::from_millis(500);
    for (name, at) in [("whole", whole), ("later", later)] {
        db_dispatch!(&app.db, pool => sqlx::query(
            "INSERT INTO job_leases (name, holder, leased_until) VALUES ($1, 'test', $2)",
        )
        .bind(name)
        .bind(at)
        .execute(pool)
        .await
        .map(|_| ()))
        .unwrap();
    }
    let before_later: Vec<(String, Timestamp)> = db_dispatch!(&app.db, pool => sqlx::query_as(
        "SELECT name, leased_until FROM job_leases WHERE leased_until < $1 ORDER BY leased_until",
    )
    .bind(later)
    .fetch_all(pool)
    .await)
    .unwrap();
    assert_eq!(before_later, vec![("whole".to_owned(), whole)]);
}

async fn a_periodic_job_lease_is_held_by_one_instance_at_a_time(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = JobLeases::new(app.db.clone(), "instance-a");
    let second = JobLeases::new(app.db.clone(), "instance-b");
    let now = Timestamp::now();
    let lease = Duration::from_secs(60);

    assert!(first.try_claim("purge", lease, now).await.unwrap());
    assert!(!second.try_claim("purge", lease, now).await.unwrap());
    assert!(
        first.try_claim("purge", lease, now).await.unwrap(),
        "renewable by its holder"
    );
    assert!(second.try_claim("other-job", lease, now).await.unwrap());

    let expired = now + Duration::from_secs(61);
    assert!(second.try_claim("purge", lease, expired).await.unwrap());
    assert!(!first.try_claim("purge", lease, expired).await.unwrap());
    first.record_run("purge", expired).await.unwrap();
    second.record_run("purge", expired).await.unwrap();
}

/// A run of a periodic job that lasts longer than its lease keeps the lease: no other instance runs the job
/// meanwhile (interval 300 ms, lease 270 ms, a run of 2 s).
async fn a_periodic_job_running_longer_than_its_lease_keeps_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let job = |runs: std::sync::Arc<std::sync::atomic::AtomicUsize>| {
        move || {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(())
            }
        }
    };
    let interval = Duration::from_millis(300);
    let first = companion_hub::ops::jobs::spawn_periodic(
        JobLeases::new(app.db.clone(), "instance-a"),
        "long-job",
        interval,
        job(runs.clone()),
    );
    assert!(
        crate::support::wait_until(Duration::from_secs(5), || async {
            runs.load(std::sync::atomic::Ordering::SeqCst) == 1
        })
        .await,
        "a runs the job"
    );
    // b ticks every 300 ms through a's whole run, well past the 270 ms lease.
    let second = companion_hub::ops::jobs::spawn_periodic(
        JobLeases::new(app.db.clone(), "instance-b"),
        "long-job",
        interval,
        job(runs.clone()),
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        runs.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "b did not join a's run"
    );
    first.abort();
    second.abort();
}

async fn concurrent_claims_give_the_lease_to_exactly_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let now = Timestamp::now();
    let claims = (0..8).map(|i| {
        let leases = JobLeases::new(app.db.clone(), format!("instance-{i}"));
        tokio::spawn(async move {
            leases
                .try_claim("sweep", Duration::from_secs(60), now)
                .await
                .unwrap()
        })
    });
    let won = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(won, 1);
}

/// Every instance races for the same orphaned run (its holder died): each round, exactly one claims it,
/// and only that claim's writes count.
async fn instances_claiming_one_orphaned_run_at_once_get_it_once(backend: Backend) {
    use companion_hub::chat::store::{self, Lease, NewRun};
    // The database alone: a running app would be an instance too, and on SQLite it forgets every other.
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(backend, dir.path()).await;
    let db = Db::connect(&database.url).await.unwrap();
    migrate::run(&db).await.unwrap();
    let (user, companion) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let now = Timestamp::now();
    db_dispatch!(&db, pool => async {
        sqlx::query(
            "INSERT INTO users (id, email, username, display_name, password_hash, created_at, updated_at) \
             VALUES ($1, 'race@example.com', 'race', 'Race', 'x', $2, $2)",
        )
        .bind(user)
        .bind(now)
        .execute(pool)
        .await?;
        sqlx::query(
            "INSERT INTO companions (id, user_id, profile, live_state, created_at, updated_at) \
             VALUES ($1, $2, '{}', '{}', $3, $3)",
        )
        .bind(companion)
        .bind(user)
        .bind(now)
        .execute(pool)
        .await?;
        for i in 0..8 {
            sqlx::query(
                "INSERT INTO instances (id, name, host, pid, started_at, heartbeat_at) \
                 VALUES ($1, $1, 'test', 1, $2, $2)",
            )
            .bind(format!("racer-{i}"))
            .bind(now)
            .execute(pool)
            .await?;
        }
        // The instance that held each run before the race, silent for a minute: dead.
        sqlx::query(
            "INSERT INTO instances (id, name, host, pid, started_at, heartbeat_at) \
             VALUES ('ghost', 'ghost', 'test', 1, $1, $1)",
        )
        .bind(now - Duration::from_secs(60))
        .execute(pool)
        .await?;
        Ok::<_, sqlx::Error>(())
    }
    .await)
    .unwrap();
    let seconds = Duration::from_secs;
    for round in 0..10 {
        let text = format!("message {round}");
        let run = store::start_run(
            &db,
            &NewRun {
                companion,
                user,
                new_message: Some(&text),
                existing_message: None,
                replaces: None,
                client_request_id: None,
                generate_image: false,
                correlation_id: "race",
                deadline: now + seconds(300),
                previous_attempts: 0,
            },
        )
        .await
        .unwrap();
        // Held by the dead instance, its lease not yet lapsed: taken over because its holder is dead.
        store::claim(
            &db,
            run.id,
            "ghost",
            now + seconds(30),
            now,
            now - seconds(120),
        )
        .await
        .unwrap()
        .expect("the ghost claimed it while alive");
        let claims = (0..8).map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                let owner = format!("racer-{i}");
                let claimed = store::claim(
                    &db,
                    run.id,
                    &owner,
                    now + seconds(30),
                    now,
                    now - seconds(10),
                )
                .await
                .unwrap();
                claimed.map(|run| (owner, run))
            })
        });
        let won: Vec<_> = futures_util::future::join_all(claims)
            .await
            .into_iter()
            .filter_map(|claim| claim.unwrap())
            .collect();
        assert_eq!(
            won.len(),
            1,
            "round {round}: one claim wins, not {:?}",
            won.iter()
                .map(|(owner, run)| (owner, run.attempts, run.status))
                .collect::<Vec<_>>()
        );
        let (owner, claimed) = &won[0];
        assert_eq!(
            claimed.attempts, 2,
            "taken over once, after the ghost's claim"
        );
        let lease = Lease {
            owner,
            token: claimed.attempts,
        };
        for i in (0..8)
            .map(|i| format!("racer-{i}"))
            .filter(|other| other != owner)
        {
            let lost = Lease {
                owner: &i,
                token: claimed.attempts,
            };
            assert!(
                !store::renew_lease(&db, run.id, lost, now + seconds(60))
                    .await
                    .unwrap()
            );
        }
        assert!(matches!(
            store::complete(&db, claimed, lease, "done", Some("stop"), None)
                .await
                .unwrap(),
            store::Finished::Now(Some(_))
        ));
    }
}

on_both_backends!(
    migrations_are_applied_at_start,
    instances_starting_at_once_apply_each_migration_once,
    a_database_newer_than_the_binary_is_refused_at_start,
    a_running_instance_stops_being_ready_when_the_schema_moves_past_it,
    without_migrate_on_start_the_instance_waits_for_the_migrate_command,
    migrate_status_fails_on_a_newer_database,
    timestamps_compare_in_time_order_in_sql,
    a_periodic_job_lease_is_held_by_one_instance_at_a_time,
    concurrent_claims_give_the_lease_to_exactly_one,
    a_periodic_job_running_longer_than_its_lease_keeps_it,
    instances_claiming_one_orphaned_run_at_once_get_it_once,
);

#[tokio::test]
async fn sqlite_runs_with_wal_foreign_keys_and_creates_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/deeper/hub.db", dir.path().display());
    let db = Db::connect(&url).await.expect("folder is created");
    let Db::Sqlite(pool) = &db else {
        panic!("sqlite URL gives a SQLite pool")
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(foreign_keys, 1);
    // A write waits while another connection holds the write lock, and goes through once it is free.
    use sqlx::ConnectOptions;
    sqlx::query("CREATE TABLE waits (n INTEGER)")
        .execute(pool)
        .await
        .unwrap();
    let mut other = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("nested/deeper/hub.db"))
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            sqlx::query("INSERT INTO waits (n) VALUES (1)")
                .execute(&pool)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "the write waits for the lock");
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    writer
        .await
        .unwrap()
        .expect("the write goes through once the lock is free");
}

#[tokio::test]
async fn unreachable_and_invalid_database_urls_fail_with_a_clear_message() {
    let error = Db::connect("postgres://nobody:pw@127.0.0.1:1/nothing")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(
            "cannot connect to the database at postgres://nobody:***@127.0.0.1:1/nothing"
        ),
        "{error}"
    );
    let error = Db::connect("mysql://localhost/x")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("sqlite:// or postgres://"), "{error}");
}

async fn a_periodic_job_runs_only_where_its_lease_is_free(backend: Backend) {
    use companion_hub::ops::jobs::spawn_periodic;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let app = TestApp::spawn(backend).await;
    let elsewhere = JobLeases::new(app.db.clone(), "another-instance");
    assert!(
        elsewhere
            .try_claim(
                "held-elsewhere",
                Duration::from_secs(3600),
                Timestamp::now()
            )
            .await
            .unwrap()
    );

    let here = JobLeases::new(app.db.clone(), "this-instance");
    let free_runs = Arc::new(AtomicUsize::new(0));
    let held_runs = Arc::new(AtomicUsize::new(0));
    let interval = Duration::from_millis(20);
    let free = {
        let runs = free_runs.clone();
        spawn_periodic(here.clone(), "free-job", interval, move || {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                anyhow::Ok(())
            }
        })
    };
    let held = {
        let runs = held_runs.clone();
        spawn_periodic(here.clone(), "held-elsewhere", interval, move || {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                anyhow::Ok(())
            }
        })
    };
    // Both tick on the same interval; by the time the free job ran three times, the held one has had
    // as many chances.
    assert!(
        crate::support::wait_until(Duration::from_secs(10), || async {
            free_runs.load(Ordering::SeqCst) >= 3
        })
        .await
    );
    free.abort();
    held.abort();
    assert_eq!(held_runs.load(Ordering::SeqCst), 0);

    let last_run: Option<Timestamp> = db_dispatch!(&app.db, pool => sqlx::query_scalar(
        "SELECT last_run_at FROM job_leases WHERE name = 'free-job'",
    )
    .fetch_one(pool)
    .await)
    .unwrap();
    assert!(last_run.is_some(), "the run is recorded");
}

on_both_backends!(a_periodic_job_runs_only_where_its_lease_is_free);
