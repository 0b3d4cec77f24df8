//! The orphaned-file cleanup: referenced files stay, old orphans go, young ones and foreign files stay, links are
//! never followed, a dry run deletes nothing, and the report's numbers are right — by CLI and on schedule.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use companion_hub::cli::cleanup_images_command;
use companion_hub::media::MediaStorage;
use companion_hub::media::cleanup::sweep;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::setup;
use crate::support::fake_images::FakeImages;
use crate::support::{Backend, TestApp, TestDatabase, counter, test_config, wait_until};
use crate::{on_both_backends, on_every_store};

const HOUR: Duration = Duration::from_secs(3600);

/// Writes a file of `size` bytes last modified `age` ago.
fn plant(path: &Path, size: usize, age: Duration) -> PathBuf {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, vec![7_u8; size]).unwrap();
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
    path.to_path_buf()
}

fn media_key(owner: &str, fill: char) -> String {
    format!("{owner}/{}.jpg", fill.to_string().repeat(64))
}

async fn orphans_older_than_the_grace_period_are_deleted_and_nothing_else(backend: Backend) {
    let images = FakeImages::start().await;
    let (app, _llm, alice, _companion) = setup(backend, images.sdapi_env(), &[]).await;
    let (status, made) = alice
        .api(
            Method::POST,
            "/api/v1/images",
            Some(json!({"prompt": "keep me"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let media = app.data_dir().join("media");
    // The picture and its thumbnail (sorted: `<sha>.jpg` before `<sha>.thumb.jpg`).
    let referenced = media.join(&app.stored_files().await[0]);
    let thumbnail = media.join(&app.stored_files().await[1]);
    assert!(thumbnail.to_str().unwrap().ends_with(".thumb.jpg"));
    // Referenced files are kept however old they are.
    File::options()
        .write(true)
        .open(&referenced)
        .unwrap()
        .set_modified(SystemTime::now() - 48 * HOUR)
        .unwrap();
    let owner = app.stored_files().await[0]
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let old = plant(&media.join(media_key(&owner, 'a')), 1000, 2 * HOUR);
    let young = plant(
        &media.join(media_key(&owner, 'b')),
        500,
        Duration::from_secs(60),
    );
    let foreign = plant(&media.join("README.txt"), 10, 48 * HOUR);
    // A link to a folder outside the store, holding a file shaped like ours: never followed.
    let outside = tempfile::tempdir().unwrap();
    let stranger = "0192f0c4-4c6a-7c3e-9d2a-0123456789ab";
    let bait = plant(
        &outside.path().join(media_key(stranger, 'c')),
        300,
        48 * HOUR,
    );
    std::os::unix::fs::symlink(outside.path().join(stranger), media.join(stranger)).unwrap();

    let config = test_config(&app.data_dir(), &app.database.url, &[]);
    let mut out = Vec::new();
    cleanup_images_command(&config, true, Some(60), &mut out)
        .await
        .expect("dry run");
    let printed = String::from_utf8(out).unwrap();
    assert!(
        printed.contains("would delete 1 orphaned (1000 bytes)"),
        "{printed}"
    );
    assert!(
        printed.contains("kept 1 younger than 60 minutes"),
        "{printed}"
    );
    assert!(old.exists(), "a dry run deletes nothing");

    let storage = MediaStorage::open(&config.storage).unwrap();
    let report = sweep(&app.db, &storage, HOUR, false).await.expect("sweep");
    assert_eq!(
        (
            report.scanned,
            report.orphans,
            report.deleted,
            report.freed_bytes,
            report.young,
            report.foreign
        ),
        (5, 1, 1, 1000, 1, 1),
        "{report:?}"
    );
    assert!(!old.exists());
    assert!(young.exists() && foreign.exists() && referenced.exists() && bait.exists());
    assert!(thumbnail.exists(), "a thumbnail is kept with its picture");
    assert_eq!(
        alice.get(made["url"].as_str().unwrap()).await.status(),
        StatusCode::OK
    );
    let metrics = app.metrics().await;
    assert!(
        counter(&metrics, "images_orphans_deleted_total") >= 1.0,
        "{metrics}"
    );
    assert!(counter(&metrics, "images_orphan_bytes_freed_total") >= 1000.0);

    // A second sweep (or a second instance) finds nothing more to do.
    let again = sweep(&app.db, &storage, HOUR, false).await.expect("sweep");
    assert_eq!((again.orphans, again.deleted), (0, 0));
}

async fn the_periodic_sweep_runs_on_its_own(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let owner = "0192f0c4-4c6a-7c3e-9d2a-0123456789ab";
    let old = plant(
        &dir.path().join("media").join(media_key(owner, 'd')),
        100,
        2 * HOUR,
    );
    let database = TestDatabase::create(backend, dir.path()).await;
    let config = test_config(
        dir.path(),
        &database.url,
        &[
            ("CLEANUP_INTERVAL_MINUTES", "60"),
            ("CLEANUP_GRACE_MINUTES", "30"),
        ],
    );
    let app = TestApp::serve(dir, database, config).await;
    let gone = wait_until(Duration::from_secs(10), || async { !old.exists() }).await;
    assert!(gone, "the first sweep runs at start");
    let runs = r#"periodic_job_runs_total{job="cleanup-images",outcome="success"}"#;
    let counted = wait_until(Duration::from_secs(10), || async {
        counter(&app.metrics().await, runs) >= 1.0
    })
    .await;
    assert!(counted, "the run is counted");
}

/// What the cleanup does on any store (a folder or a bucket): a file just written is young and stays; past
/// the grace period (here none) an unreferenced file of ours goes, and nothing else does.
async fn an_orphan_waits_out_the_grace_period_on_every_store(backend: Backend) {
    let images = FakeImages::start().await;
    let (app, _llm, alice, _companion) = setup(backend, images.sdapi_env(), &[]).await;
    let (status, made) = alice
        .api(
            Method::POST,
            "/api/v1/images",
            Some(json!({"prompt": "keep me"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let kept = app.stored_files().await;
    assert_eq!(kept.len(), 2, "the picture and its thumbnail: {kept:?}");
    let owner = kept[0].split('/').next().unwrap().to_owned();
    let orphan = media_key(&owner, 'e');
    app.media.put(&orphan, vec![1; 700]).await.unwrap();
    app.media
        .put("notes/README.txt", b"not ours".to_vec())
        .await
        .unwrap();

    let report = sweep(&app.db, &app.media, HOUR, false)
        .await
        .expect("sweep");
    assert_eq!(
        (
            report.scanned,
            report.orphans,
            report.young,
            report.foreign,
            report.deleted
        ),
        (4, 0, 1, 1, 0),
        "just written, the orphan is young: {report:?}"
    );
    let report = sweep(&app.db, &app.media, Duration::ZERO, false)
        .await
        .expect("sweep");
    assert_eq!(
        (report.orphans, report.deleted, report.freed_bytes),
        (1, 1, 700),
        "{report:?}"
    );
    let mut expected = kept.clone();
    expected.push("notes/README.txt".to_owned());
    expected.sort();
    assert_eq!(
        app.stored_files().await,
        expected,
        "nothing else is touched"
    );
    let url = made["url"].as_str().unwrap();
    assert_eq!(alice.get(url).await.status(), StatusCode::OK);
    assert_eq!(
        alice.get(&format!("{url}?size=thumb")).await.status(),
        StatusCode::OK
    );
}

on_both_backends!(
    orphans_older_than_the_grace_period_are_deleted_and_nothing_else,
    the_periodic_sweep_runs_on_its_own,
);

on_every_store!(an_orphan_waits_out_the_grace_period_on_every_store);
