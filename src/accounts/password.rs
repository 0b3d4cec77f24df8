//! Password hashing with Argon2id (m = 19 MiB, t = 2, p = 1), always off the async runtime.
//!
//! Policy: a login for an unknown account still runs one verification, against a dummy hash, so the
//! answer takes the same time and says the same thing whether or not the account exists. At most one hash
//! per core runs at a time (the rest wait their turn): the work is all CPU, so more at once would finish no
//! sooner, only hold more 19 MiB buffers and crowd out the chats' blocking work.

use std::sync::{Arc, LazyLock, OnceLock};

use argon2::password_hash::SaltString;
use argon2::password_hash::rand_core::OsRng;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

use crate::error::AppError;
use crate::ops::metrics::AppCounters;

static DUMMY_HASH: OnceLock<String> = OnceLock::new();

/// One permit per core: how many hashes may run at once.
static HASHING: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, usize::from))
});

/// Runs `work` on a blocking thread once a core is free for it.
async fn run_hashing<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|err| AppError::Internal(anyhow::anyhow!("password hashing closed: {err}")))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| AppError::Internal(anyhow::anyhow!("password hashing task failed: {err}")))
}

fn hash_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

fn verify_blocking(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Hashes a new password (PHC string with salt and parameters).
pub async fn hash(password: String) -> Result<String, AppError> {
    run_hashing(move || hash_blocking(&password))
        .await?
        .map_err(|err| AppError::Internal(anyhow::anyhow!("password hashing failed: {err}")))
}

/// Checks `password` against `hash`, or against the dummy hash when there is no account; counted in
/// `counters` once the verification has run.
pub async fn verify(
    counters: &Arc<AppCounters>,
    password: String,
    hash: Option<String>,
) -> Result<bool, AppError> {
    let known = hash.is_some();
    let counters = counters.clone();
    let outcome = run_hashing(move || {
        let hash = match hash {
            Some(hash) => hash,
            None => dummy_hash()?.to_owned(),
        };
        let matches = verify_blocking(&password, &hash);
        counters.record_password_verification();
        Ok::<_, argon2::password_hash::Error>(matches)
    })
    .await?
    .map_err(|err| AppError::Internal(anyhow::anyhow!("dummy hash failed: {err}")))?;
    Ok(known && outcome)
}

/// Computes the dummy hash now, so the first unknown-user login is not slower than the rest.
pub async fn warm_up() -> Result<(), AppError> {
    run_hashing(|| dummy_hash().map(|_| ()))
        .await?
        .map_err(|err| AppError::Internal(anyhow::anyhow!("dummy hash failed: {err}")))
}

fn dummy_hash() -> Result<&'static str, argon2::password_hash::Error> {
    if let Some(hash) = DUMMY_HASH.get() {
        return Ok(hash);
    }
    let hash = hash_blocking("not a real password: nothing verifies against this")?;
    Ok(DUMMY_HASH.get_or_init(|| hash))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_hashes_run_at_once_than_there_are_cores() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let hashes = (0..cores * 3).map(|_| {
            let (running, most) = (running.clone(), most.clone());
            run_hashing(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Work long enough for the others to pile up behind the permits.
                let _ = hash_blocking("Tulip-Garden-42");
                running.fetch_sub(1, Ordering::SeqCst);
            })
        });
        let done = futures_util::future::join_all(hashes).await;
        assert!(done.iter().all(Result::is_ok), "every hash ran");
        assert!(
            most.load(Ordering::SeqCst) <= cores,
            "at most {cores} at once, saw {}",
            most.load(Ordering::SeqCst)
        );
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let counters = Arc::new(AppCounters::default());
        let hash = hash("Tulip-Garden-42".into())
            .await
            .expect("test setup is valid");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            verify(&counters, "Tulip-Garden-42".into(), Some(hash.clone()))
                .await
                .expect("test setup is valid")
        );
        assert!(
            !verify(&counters, "tulip-garden-42".into(), Some(hash))
                .await
                .expect("test setup is valid")
        );
        assert_eq!(counters.password_verifications(), 2);
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify_but_cost_the_same_verification() {
        let counters = Arc::new(AppCounters::default());
        assert!(
            !verify(
                &counters,
                "not a real password: nothing verifies against this".into(),
                None
            )
            .await
            .expect("test setup is valid")
        );
        assert_eq!(
            counters.password_verifications(),
            1,
            "Argon2 ran against the dummy hash"
        );
    }
}
